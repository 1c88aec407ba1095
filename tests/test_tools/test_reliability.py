"""Nothing lost, nothing silent: the user-facing tools on the demo data
when a run dies while saving, a checkpoint does not fit or is broken, the
data is empty or mislabelled, or an image is not finite."""
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from ..conftest import REPO, run_tool

CONFIG = os.path.join(REPO, 'tests/data/configs/demo_tiny.py')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _data(root):
    return [f'{loader}.dataset.data_root={root}' for loader in LOADERS]


def _train(work_dir, data_root, *extra, options=(), prefix=(), check=True):
    return run_tool([
        *prefix, 'tools/train.py', CONFIG, '--work-dir', str(work_dir),
        *extra, '--cfg-options', 'train_cfg.max_iters=4',
        'default_hooks.checkpoint.interval=1', *_data(data_root), *options
    ], check=check)


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
    assert (tmp_path / 'iter_3.pth.partial').exists()
    last = (tmp_path / 'last_checkpoint').read_text()
    assert last == str(tmp_path / 'iter_2.pth')
    _state(last)
    assert (tmp_path / 'iter_1.pth').exists() == (keep == 2)

    resumed = _train(tmp_path, demo_data, '--resume', options=options)
    assert 'iter_2.pth' in resumed.stdout + resumed.stderr
    assert not (tmp_path / 'iter_3.pth.partial').exists()
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
])
def test_broken_checkpoints_are_named_with_what_is_wrong(
        tmp_path, demo_data, straight, content, problem):
    path = tmp_path / 'broken.pth'
    if content == 'half':
        data = (straight / 'iter_4.pth').read_bytes()
        content = data[:len(data) // 2]
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
    assert 'cannot be loaded safely (Unsupported global' in proc.stderr
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
