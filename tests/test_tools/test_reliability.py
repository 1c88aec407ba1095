"""Nothing lost, nothing silent, nothing run from a file: the user-facing
tools on the demo data when a run dies or the disk fills while saving, two
runs share a work dir, a checkpoint does not fit, is broken, corrupt or
unsafe, the data is empty, mislabelled, truncated or not finite, the loss
turns NaN, or an export is killed or fails its check."""
import os
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from cait_mm.utils.checkpoint_files import checkpoint_problem
from ..conftest import REPO, run_tool

CONFIG = os.path.join(REPO, 'tests/data/configs/demo_tiny.py')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# Training results depend on the number of threads (reductions split
# differently): every run here, and so both sides of a bit-for-bit
# comparison, uses one.
PINNED = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


def _data(root):
    return [f'{loader}.dataset.data_root={root}' for loader in LOADERS]


def _train_args(work_dir, data_root, *extra, options=(), prefix=()):
    return [
        *prefix, 'tools/train.py', CONFIG, '--work-dir', str(work_dir),
        *extra, '--cfg-options', 'train_cfg.max_iters=4',
        'default_hooks.checkpoint.interval=1', *_data(data_root), *options
    ]


def _train(work_dir, data_root, *extra, options=(), prefix=(), check=True,
           env=None):
    return run_tool(
        _train_args(work_dir, data_root, *extra, options=options,
                    prefix=prefix),
        check=check, env=dict(PINNED, **(env or {})))


def _log_file(work_dir):
    logs = sorted(work_dir.glob('*/*.log'))
    assert len(logs) == 1, logs
    return logs[0].read_text()


def _state(path):
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def straight(tmp_path_factory, demo_data):
    """4 iterations without interruption, a checkpoint after each."""
    work_dir = tmp_path_factory.mktemp('straight')
    _train(work_dir, demo_data,
           options=['default_hooks.checkpoint.max_keep_ckpts=4'])
    return work_dir


def _assert_same_weights(a, b):
    a, b = _state(a), _state(b)
    assert a['meta']['iter'] == b['meta']['iter']
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][key], value, rtol=0,
                                   atol=0, msg=key)


@pytest.mark.parametrize('keep', [1, 2])
def test_a_kill_while_saving_leaves_a_resumable_run(
        tmp_path, demo_data, straight, keep):
    options = [f'default_hooks.checkpoint.max_keep_ckpts={keep}']
    died = _train(tmp_path, demo_data, options=options, check=False,
                  prefix=('tests/test_tools/die_while_saving.py', '3'))
    assert died.returncode == 9
    # the third save died half-way: nothing of it under a normal name, the
    # second checkpoint complete and named, the first kept if asked to
    assert not (tmp_path / 'iter_3.pth').exists()
    assert list(tmp_path.glob('iter_3.pth.*.partial'))
    last = (tmp_path / 'last_checkpoint').read_text()
    assert last == str(tmp_path / 'iter_2.pth')
    _state(last)
    assert (tmp_path / 'iter_1.pth').exists() == (keep == 2)
    holder = (tmp_path / 'train.lock').read_text().splitlines()[0]

    resumed = _train(tmp_path, demo_data, '--resume', options=options)
    log = resumed.stdout + resumed.stderr
    assert 'iter_2.pth' in log
    # the killed run's lock: its process is gone
    assert f'Taking over the lock of work dir "{tmp_path}" from ' \
        f'{holder.replace("=", " ")} on' in log
    assert not list(tmp_path.glob('*.partial'))
    _assert_same_weights(straight / 'iter_4.pth', tmp_path / 'iter_4.pth')
    kept = sorted(p.name for p in tmp_path.glob('iter_*.pth'))
    assert kept == ['iter_3.pth', 'iter_4.pth'][-keep:]


def test_resume_falls_back_to_the_newest_complete_checkpoint(
        tmp_path, demo_data, straight):
    for name in ('iter_1.pth', 'iter_2.pth', 'iter_3.pth'):
        shutil.copy(straight / name, tmp_path / name)
    # iter_3 cut short, as an old-style save killed half-way leaves it
    data = (tmp_path / 'iter_3.pth').read_bytes()
    (tmp_path / 'iter_3.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'last_checkpoint').write_text('')
    proc = _train(tmp_path, demo_data, '--resume')
    log = proc.stdout + proc.stderr
    assert 'empty last_checkpoint' in log
    assert f'newest complete checkpoint, {tmp_path / "iter_2.pth"}' in log
    _assert_same_weights(straight / 'iter_4.pth', tmp_path / 'iter_4.pth')


def test_load_from_a_checkpoint_of_another_architecture_fails(
        tmp_path, demo_data, straight):
    proc = run_tool([
        'tools/train.py', 'configs/demo/upernet_deit_t_demo_shapes.py',
        '--work-dir', str(tmp_path), '--cfg-options',
        f'load_from={straight / "iter_4.pth"}', 'train_cfg.max_iters=1',
        *_data(demo_data)
    ], check=False)
    assert proc.returncode != 0
    assert 'does not fit' in proc.stderr
    assert 'shape mismatch: ' in proc.stderr
    assert 'backbone.pos_embed: checkpoint (1, 17, 64) vs model (1, 257, ' \
        '192)' in proc.stderr
    assert 'missing keys' in proc.stderr
    assert 'backbone.blocks.11.attn.qkv.weight' in proc.stderr
    assert not list(tmp_path.glob('iter_*.pth'))  # no training happened


def _copy_data(demo_data, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(demo_data, root)
    return root


def test_out_of_range_labels_fail_at_test_time_naming_the_file(
        tmp_path, demo_data, straight):
    root = _copy_data(demo_data, tmp_path)
    label = sorted((root / 'annotations' / 'validation').glob('*.png'))[1]
    seg = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    seg[0, :3] = (9, 200, 5)
    cv2.imwrite(str(label), seg)
    proc = run_tool([
        'tools/test.py', CONFIG, str(straight / 'iter_4.pth'), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *_data(root)
    ], check=False)
    assert proc.returncode != 0
    assert f'{label}: label ids [9, 200] are outside [0, 6)' in proc.stderr


def test_an_empty_image_folder_or_wrong_suffix_is_named(tmp_path, demo_data):
    proc = _train(tmp_path, demo_data, check=False,
                  options=['train_dataloader.dataset.img_suffix=.png'])
    assert proc.returncode != 0
    folder = os.path.join(demo_data, 'images/training')
    assert f'found no image ending in ".png" in "{folder}"' in proc.stderr
    assert 'need at least one array' not in proc.stderr


@pytest.mark.parametrize('content, problem', [
    (b'', 'is empty (0 bytes'),
    (b'not a checkpoint\n', 'is not a PyTorch checkpoint'),
    ('half', 'is truncated or corrupt'),
    ('zeroed', 'is corrupt: the data of its entry'),
])
def test_broken_checkpoints_are_named_with_what_is_wrong(
        tmp_path, demo_data, straight, content, problem):
    path = tmp_path / 'broken.pth'
    data = (straight / 'iter_4.pth').read_bytes()
    if content == 'half':
        content = data[:len(data) // 2]
    elif content == 'zeroed':  # a damaged block: torch loads it as it is
        middle = len(data) // 2
        content = data[:middle] + bytes(4096) + data[middle + 4096:]
    path.write_bytes(content)
    proc = run_tool([
        'tools/test.py', CONFIG, str(path), '--work-dir', str(tmp_path),
        '--cfg-options', *_data(demo_data)
    ], check=False)
    assert proc.returncode != 0
    assert f'Checkpoint "{path}" {problem}' in proc.stderr
    assert 'weights_only=False' not in proc.stdout + proc.stderr


def test_an_unsafe_checkpoint_is_refused_without_unsafe_advice(
        tmp_path, demo_data, straight):
    checkpoint = _state(straight / 'iter_4.pth')
    checkpoint['meta']['hook'] = print  # a global weights_only refuses
    path = tmp_path / 'unsafe.pth'
    torch.save(checkpoint, path)
    proc = run_tool([
        'tools/test.py', CONFIG, str(path), '--work-dir', str(tmp_path),
        '--cfg-options', *_data(demo_data)
    ], check=False)
    assert proc.returncode != 0
    assert 'cannot be loaded safely (refused GLOBAL print: Unsupported ' \
        'global' in proc.stderr
    assert 'weights_only=False' not in proc.stdout + proc.stderr


def test_a_non_finite_image_is_reported_by_name(tmp_path, demo_data,
                                                straight):
    root = _copy_data(demo_data, tmp_path)
    images = sorted((root / 'images' / 'validation').glob('*.jpg'))
    for image in images:  # as float32 TIFFs, one with a NaN pixel
        pixels = cv2.imread(str(image)).astype(np.float32)
        if image == images[2]:
            pixels[5, 7] = np.nan
        cv2.imwrite(str(image.with_suffix('.tif')), pixels)
    proc = run_tool([
        'tools/test.py', CONFIG, str(straight / 'iter_4.pth'), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *_data(root),
        'test_dataloader.dataset.img_suffix=.tif',
        'test_dataloader.dataset.pipeline.0.color_type=unchanged'
    ])
    nan_image = images[2].with_suffix('.tif')
    log = proc.stdout + proc.stderr
    assert f'{nan_image}: 3 non-finite pixel values' in log
    assert log.count('non-finite pixel values') == 1


class _Payload:
    """Unpickling it runs a shell command (creates the file ``path``)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f'touch {self.path}', )


@pytest.mark.parametrize('option, cached', [
    ('load_from=https://example.invalid/models/evil.pth', 'evil.pth'),
    ('model.backbone.pretrained=open-mmlab://vgg16_caffe',
     'vgg16_caffe-292e1171.pth'),
    ('model.backbone.compressed=https://example.invalid/compressed.pth',
     'compressed.pth'),
])
def test_a_remote_checkpoint_runs_no_code(tmp_path, demo_data, straight,
                                          option, cached):
    """A checkpoint from a URL (here already in torch.hub's cache, as after
    its download: no network) is loaded as safely as a local file."""
    checkpoints = tmp_path / 'torch' / 'hub' / 'checkpoints'
    checkpoints.mkdir(parents=True)
    checkpoint = _state(straight / 'iter_4.pth')
    ran = tmp_path / 'payload_ran'
    checkpoint['meta']['x'] = _Payload(ran)
    torch.save(checkpoint, checkpoints / cached)
    proc = _train(tmp_path / 'work', demo_data, check=False,
                  options=[option],
                  env={'TORCH_HOME': str(tmp_path / 'torch')})
    assert proc.returncode != 0
    assert f'Checkpoint "{checkpoints / cached}" holds an object that ' \
        'cannot be loaded safely (refused GLOBAL posix.system' in proc.stderr
    assert not ran.exists()
    assert not list((tmp_path / 'work').glob('iter_*.pth'))


def _wait_for(path, proc):
    while not path.exists():
        assert proc.poll() is None, 'the run ended before it was paused'
        time.sleep(0.1)


def test_a_second_run_on_a_work_dir_in_use_fails_at_once(
        tmp_path, demo_data):
    work_dir, flag = tmp_path / 'work', tmp_path / 'go_on'
    output = open(tmp_path / 'first.out', 'w')  # a pipe could fill and block
    first = subprocess.Popen(
        [sys.executable, *_train_args(
            work_dir, demo_data,
            prefix=('tests/test_tools/pause_while_saving.py', str(flag)))],
        cwd=REPO, env=dict(os.environ, **PINNED), stdout=output,
        stderr=subprocess.STDOUT)
    try:
        # the first run is writing its first checkpoint
        _wait_for(tmp_path / 'go_on.paused', first)
        second = _train(work_dir, demo_data, check=False)
        assert second.returncode != 0
        assert f'Work dir "{work_dir}" is in use by another training run ' \
            f'(pid {first.pid} on ' in second.stderr
        assert len(list(work_dir.glob('2*'))) == 1  # no log folder of its own
    finally:
        flag.touch()
        first.wait(timeout=900)
        output.close()
    assert first.returncode == 0, (tmp_path / 'first.out').read_text()
    assert (work_dir / 'last_checkpoint').read_text() == \
        str(work_dir / 'iter_4.pth')
    for step in (2, 3, 4):  # max_keep_ckpts=3
        assert checkpoint_problem(str(work_dir / f'iter_{step}.pth')) is None
    assert not (work_dir / 'train.lock').exists()


def test_resume_falls_back_past_a_mixed_checkpoint(tmp_path, demo_data,
                                                   straight):
    """A checkpoint two runs wrote into at once: complete as a zip archive,
    but its data does not match its checksums."""
    for name in ('iter_1.pth', 'iter_2.pth'):
        shutil.copy(straight / name, tmp_path / name)
    a = (straight / 'iter_3.pth').read_bytes()
    b = (straight / 'iter_2.pth').read_bytes()
    (tmp_path / 'iter_3.pth').write_bytes(a[:len(a) // 2] + b[len(b) // 2:])
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_3.pth'))
    proc = _train(tmp_path, demo_data, '--resume')
    log = proc.stdout + proc.stderr
    assert f'naming "{tmp_path / "iter_3.pth"}", which is corrupt: the ' \
        'data of its entry' in log
    assert f'newest complete checkpoint, {tmp_path / "iter_2.pth"}' in log
    _assert_same_weights(straight / 'iter_4.pth', tmp_path / 'iter_4.pth')


def _nan_image_data(demo_data, tmp_path, split):
    """The demo data with the images of ``split`` as float32 TIFFs, the
    third with NaN pixels; returns the root and that image."""
    root = _copy_data(demo_data, tmp_path)
    images = sorted((root / 'images' / split).glob('*.jpg'))
    for image in images:
        pixels = cv2.imread(str(image)).astype(np.float32)
        if image == images[2]:
            pixels[5, 7] = np.nan
        cv2.imwrite(str(image.with_suffix('.tif')), pixels)
    return root, images[2].with_suffix('.tif')


def test_a_non_finite_training_image_fails_the_run_in_its_log(
        tmp_path, demo_data):
    root, nan_image = _nan_image_data(demo_data, tmp_path, 'training')
    work_dir = tmp_path / 'work'
    proc = _train(work_dir, root, check=False, options=[
        'train_dataloader.dataset.img_suffix=.tif',
        'train_dataloader.dataset.pipeline.0.color_type=unchanged'
    ], env={'PYTHONWARNINGS': 'ignore'})
    assert proc.returncode != 0
    message = f'{nan_image}: 3 non-finite pixel values (NaN or inf)'
    assert message in proc.stderr
    assert message in _log_file(work_dir)
    # the iterations before the image came up were trained and saved
    for checkpoint in work_dir.glob('iter_*.pth'):
        for key, value in _state(checkpoint)['state_dict'].items():
            assert torch.isfinite(value).all(), key


@pytest.mark.parametrize('action', ['stop', 'skip'])
def test_a_non_finite_loss_stops_or_skips_before_the_step(
        tmp_path, demo_data, action):
    """A learning rate that makes the loss NaN at the second iteration (the
    weights after the first are huge, still finite)."""
    proc = _train(tmp_path, demo_data, '--non-finite', action, check=False,
                  options=['optim_wrapper.optimizer.lr=1e25'])
    log = _log_file(tmp_path)
    assert 'Iteration 2: the loss is nan (batch: ' in log
    assert f'{demo_data}/images/training/demo_0000' in log
    if action == 'stop':
        assert proc.returncode != 0
        assert 'FloatingPointError: Iteration 2: the loss is nan' in \
            proc.stderr
        assert (tmp_path / 'last_checkpoint').read_text() == \
            str(tmp_path / 'iter_1.pth')
        assert not (tmp_path / 'iter_2.pth').exists()
        last = tmp_path / 'iter_1.pth'
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
        for step in (2, 3, 4):
            assert f'Iteration {step}: the loss is nan' in log
        assert 'the step is skipped (3 skipped so far)' in log
        last = tmp_path / 'iter_4.pth'
    for key, value in _state(last)['state_dict'].items():
        assert torch.isfinite(value).all(), key


def test_a_full_disk_while_saving_names_the_file_and_leaves_no_partial(
        tmp_path, demo_data):
    proc = _train(tmp_path, demo_data, check=False, prefix=(
        'tests/test_tools/die_while_saving.py', '3', '--enospc'))
    assert proc.returncode != 0
    assert f"No space left on device (while writing it; nothing was " \
        f"written under this name): '{tmp_path / 'iter_3.pth'}'" in \
        proc.stderr
    assert not list(tmp_path.glob('*.partial'))
    assert (tmp_path / 'last_checkpoint').read_text() == \
        str(tmp_path / 'iter_2.pth')
    assert checkpoint_problem(str(tmp_path / 'iter_2.pth')) is None


def test_a_kill_while_saving_the_best_keeps_the_previous_best(
        tmp_path, demo_data):
    """aAcc improves at iterations 1 and 2 on the demo data: the second
    best checkpoint is the one the kill interrupts."""
    proc = _train(tmp_path, demo_data, check=False, options=[
        'train_cfg.val_interval=1', 'default_hooks.checkpoint.save_best=aAcc'
    ], prefix=('tests/test_tools/die_while_saving.py', '2', '--match',
               'best_'))
    assert proc.returncode == 9
    assert checkpoint_problem(str(tmp_path / 'best_aAcc_iter_1.pth')) is None
    assert not (tmp_path / 'best_aAcc_iter_2.pth').exists()
    assert list(tmp_path.glob('best_aAcc_iter_2.pth.*.partial'))
    assert (tmp_path / 'last_checkpoint').read_text() == \
        str(tmp_path / 'iter_2.pth')


def test_a_truncated_label_map_is_named(tmp_path, demo_data, straight):
    root = _copy_data(demo_data, tmp_path)
    label = sorted((root / 'annotations' / 'validation').glob('*.png'))[1]
    data = label.read_bytes()
    label.write_bytes(data[:len(data) // 2])
    proc = run_tool([
        'tools/test.py', CONFIG, str(straight / 'iter_4.pth'), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *_data(root)
    ], check=False)
    assert proc.returncode != 0
    assert f'{label}: cannot be loaded by LoadAnnotations (OSError: image ' \
        'file is truncated' in proc.stderr


EXPORTS = {
    'compressed': ['tools/deployment/export_compressed.py', 'compressed.pth'],
    'onnx': ['tools/deployment/export_onnx.py', 'model.onnx', '--shape',
             '64', '64', '--part', 'backbone'],
}


@pytest.mark.parametrize('kind', sorted(EXPORTS))
def test_a_killed_or_failed_export_keeps_the_previous_one(
        tmp_path, straight, kind):
    tool, name, *extra = EXPORTS[kind]
    out = tmp_path / name
    args = [tool, CONFIG, str(straight / 'iter_4.pth'), str(out), *extra]
    run_tool(args)
    good = out.read_bytes()
    killed = run_tool(['tests/test_tools/die_while_saving.py', '1', *args],
                      check=False)
    assert killed.returncode == 9
    assert out.read_bytes() == good
    if kind == 'onnx':  # an export failing its check is not kept either
        failed = run_tool([*args, '--tolerance', '-1'], check=False)
        assert failed.returncode != 0
        assert f'{out} not written' in failed.stderr
        assert out.read_bytes() == good
        # the killed run's partial file only
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != name]
        assert len(leftovers) == 1 and leftovers[0].endswith('.partial')
