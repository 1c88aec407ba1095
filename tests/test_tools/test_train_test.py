"""End to end through tools/train.py and tools/test.py on generated data."""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from ..conftest import REPO, run_tool

CONFIG = osp.join(REPO, 'tests/data/configs/demo_tiny.py')


def _data_options(root):
    return [
        f'{loader}.dataset.data_root={root}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]


def _train(work_dir, data_root, max_iters, *extra, options=()):
    return run_tool([
        'tools/train.py', CONFIG, '--work-dir', str(work_dir), *extra,
        '--cfg-options', f'train_cfg.max_iters={max_iters}',
        *_data_options(data_root), *options
    ])


def _load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, demo_data):
    """Run A: 4 iterations straight. Run B: 2 iterations, then --resume."""
    root = tmp_path_factory.mktemp('runs')
    _train(root / 'a', demo_data, 4)
    _train(root / 'b', demo_data, 2)
    resumed = _train(root / 'b', demo_data, 4, '--resume')
    return root, resumed


def test_resume_continues_exactly(trained):
    root, resumed = trained
    log = resumed.stdout + resumed.stderr
    assert 'resumed' in log.lower() and 'iter_2.pth' in log
    straight = _load(root / 'a' / 'iter_4.pth')
    continued = _load(root / 'b' / 'iter_4.pth')
    assert continued['meta']['iter'] == straight['meta']['iter'] == 4
    assert straight['state_dict'].keys() == continued['state_dict'].keys()
    for key, value in straight['state_dict'].items():
        torch.testing.assert_close(
            continued['state_dict'][key], value, rtol=0, atol=0, msg=key)
    for a, b in zip(straight['optimizer']['state'].values(),
                    continued['optimizer']['state'].values()):
        torch.testing.assert_close(a['exp_avg'], b['exp_avg'], rtol=0, atol=0)


def test_tools_test_evaluates_the_checkpoint(trained, demo_data, tmp_path):
    root, _ = trained
    proc = run_tool([
        'tools/test.py', CONFIG,
        str(root / 'a' / 'iter_4.pth'), '--work-dir',
        str(tmp_path), '--out',
        str(tmp_path / 'pred'), '--speed-warmup', '1', '--cfg-options',
        *_data_options(demo_data)
    ])
    log = proc.stdout + proc.stderr
    assert 'per class results' in log and 'mIoU' in log
    # the run's speed after its first batch (3 of the 4 images), with
    # the scores
    assert 'test speed:' in log and '(3 images in' in log
    metrics = [
        json.loads(line) for line in open(
            next(tmp_path.glob('*/*.json')), encoding='utf-8')
    ]
    assert 0 <= metrics[-1]['mIoU'] <= 100
    assert metrics[-1]['images_per_s'] > 0
    assert len(list((tmp_path / 'pred').glob('*.png'))) == 4


def test_tools_test_rejects_a_checkpoint_that_does_not_fit(
        trained, demo_data, tmp_path):
    root, _ = trained
    ckpt = _load(root / 'a' / 'iter_4.pth')
    state = ckpt['state_dict']
    state['backbone.blocks.0.attn.qkv_w'] = state.pop(
        'backbone.blocks.0.attn.qkv.weight')
    path = tmp_path / 'renamed.pth'
    torch.save(ckpt, path)
    proc = run_tool([
        'tools/test.py', CONFIG,
        str(path), '--work-dir',
        str(tmp_path), '--cfg-options', *_data_options(demo_data)
    ], check=False)
    assert proc.returncode != 0
    assert 'backbone.blocks.0.attn.qkv.weight' in proc.stderr
    assert 'backbone.blocks.0.attn.qkv_w' in proc.stderr


def test_missing_data_fails_before_building_anything(tmp_path):
    missing = str(tmp_path / 'no_data')
    proc = run_tool([
        'tools/train.py', CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--cfg-options', *_data_options(missing)
    ], check=False)
    assert proc.returncode != 0
    assert missing in proc.stderr
    assert 'tools/misc/make_demo_data.py' in proc.stderr


# training-free ATME on the dense config: dotted keys create the reducer
ATME = [
    'model.backbone.token_reducer.type=ATME',
    'model.backbone.token_reducer.schedule=[(0,h,0.5),(1,v,0.5)]'
]


def test_token_merging_trains_and_tests_through_the_tools(
        trained, demo_data, tmp_path):
    root, _ = trained
    _train(tmp_path / 'cait', demo_data, 2, options=ATME)
    ckpt = _load(tmp_path / 'cait' / 'iter_2.pth')
    cfg = Config.fromstring(ckpt['meta']['cfg'], '.py')
    reducer = cfg.model.backbone.token_reducer
    assert reducer.type == 'ATME'
    assert reducer.schedule == [(0, 'h', 0.5), (1, 'v', 0.5)]
    # trained with ATME, and, training-free, ATME on the dense checkpoint
    for path in (tmp_path / 'cait' / 'iter_2.pth', root / 'a' / 'iter_4.pth'):
        proc = run_tool([
            'tools/test.py', CONFIG,
            str(path), '--work-dir',
            str(tmp_path / 'test'), '--cfg-options', *ATME,
            *_data_options(demo_data)
        ])
        assert 'mIoU' in proc.stdout + proc.stderr


def _metrics(work_dir):
    return json.loads(open(next(work_dir.glob('*/*.json')),
                           encoding='utf-8').readlines()[-1])


def test_tools_test_compile_gives_the_eager_scores(trained, demo_data,
                                                   tmp_path):
    """--compile (inductor) runs the backbone with ATME and the decode head
    compiled: the same predictions, so the same scores."""
    root, _ = trained
    scores = {}
    for name, extra in (('eager', []), ('compiled', ['--compile'])):
        proc = run_tool([
            'tools/test.py', CONFIG,
            str(root / 'a' / 'iter_4.pth'), '--work-dir',
            str(tmp_path / name), *extra, '--cfg-options', *ATME,
            *_data_options(demo_data)
        ])
        scores[name] = _metrics(tmp_path / name)
    assert 'compiled backbone, decode_head' in proc.stdout + proc.stderr
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert scores['compiled'][key] == pytest.approx(
            scores['eager'][key], abs=0.02)


def _losses(work_dir):
    scalars = next(work_dir.glob('*/vis_data/scalars.json'))
    return [json.loads(line)['loss'] for line in open(scalars)
            if '"loss"' in line]


def test_tools_train_compile_trains_the_same(trained, demo_data, tmp_path):
    """--compile (AOTAutograd here, for time; inductor in the docs' runs):
    backbone and decode head forwards and backwards compiled, the same
    losses as eager."""
    root, _ = trained
    proc = _train(tmp_path / 'compiled', demo_data, 4, '--compile',
                  '--compile-backend', 'aot_eager')
    assert 'compiled backbone, decode_head' in proc.stdout + proc.stderr
    compiled, eager = _losses(tmp_path / 'compiled'), _losses(root / 'a')
    assert len(compiled) == len(eager) == 4
    assert compiled == pytest.approx(eager, rel=1e-4)
