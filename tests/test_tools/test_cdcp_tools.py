"""CDCP end to end: train with CDCPHook, resume exactly, export, evaluate."""
import json
import os.path as osp

import pytest
import torch

from ..conftest import REPO, run_tool

CONFIG = osp.join(REPO, 'tests/data/configs/demo_tiny_cdcp.py')


def _data_options(root):
    return [
        f'{loader}.dataset.data_root={root}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]


def _train(work_dir, data_root, max_iters, *extra):
    return run_tool([
        'tools/train.py', CONFIG, '--work-dir',
        str(work_dir), *extra, '--cfg-options',
        f'train_cfg.max_iters={max_iters}', *_data_options(data_root)
    ])


def _load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def _miou(work_dir):
    log = next(work_dir.glob('*/*.json'))
    return [json.loads(line) for line in open(log)][-1]['mIoU']


@pytest.fixture(scope='module')
def runs(tmp_path_factory, demo_data):
    """Run A: 4 iterations straight. Run B: 2, then --resume to 4."""
    root = tmp_path_factory.mktemp('cdcp')
    straight = _train(root / 'a', demo_data, 4)
    _train(root / 'b', demo_data, 2)
    _train(root / 'b', demo_data, 4, '--resume')
    return root, straight


def test_training_logs_sparsity_and_resume_continues_exactly(runs):
    root, straight = runs
    log = straight.stdout + straight.stderr
    assert 'cdcp/qk_sparsity: 0.5000' in log
    assert 'cdcp/lateral_sparsity: 0.5000' in log
    a = _load(root / 'a' / 'iter_4.pth')
    b = _load(root / 'b' / 'iter_4.pth')
    assert a['meta']['cdcp'] == b['meta']['cdcp'] == dict(last_selection=3)
    masks = [k for k in a['state_dict'] if k.endswith('.pruned')]
    # qk, v, mlp in each of the 4 blocks; in the head 4 PPM convs, the
    # laterals with the PPM bottleneck, 3 FPN convs, fpn_bottleneck
    assert len(masks) == 3 * 4 + 4 + 1 + 3 + 1
    assert all(a['state_dict'][k].float().mean() == 0.5 for k in masks)
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(
            b['state_dict'][key], value, rtol=0, atol=0, msg=key)


def test_export_evaluates_like_the_masked_model(runs, demo_data, tmp_path):
    root, _ = runs
    ckpt = str(root / 'a' / 'iter_4.pth')
    out = str(tmp_path / 'compressed.pth')
    proc = run_tool(
        ['tools/deployment/export_compressed.py', CONFIG, ckpt, out])
    assert 'block 0: qk_dim=16, v_dim=16, mlp_hidden=64' in proc.stdout
    assert 'lateral: [16]' in proc.stdout
    exported = _load(out)  # tensors and plain types only
    widths = exported['meta']['cait_mm']['spec']['channel_widths']
    assert widths == [dict(qk_dim=16, v_dim=16, mlp_hidden=64)] * 4
    head = exported['meta']['cait_mm']['heads']['decode_head']
    assert head == dict(channel_widths=dict(
        ppm=[16] * 4, lateral=[16], fpn=[16] * 3, fuse=[16]))
    assert exported['state_dict']['decode_head.conv_seg.weight'].shape[1] \
        == 16

    run_tool([
        'tools/test.py', CONFIG, ckpt, '--work-dir',
        str(tmp_path / 'masked'), '--cfg-options', *_data_options(demo_data)
    ])
    # the training config evaluates the export: the backbone is built from
    # the file's metadata
    proc = run_tool([
        'tools/test.py', CONFIG, out, '--work-dir',
        str(tmp_path / 'exported'), '--cfg-options', *_data_options(demo_data)
    ])
    assert 'is an exported compressed model' in proc.stdout + proc.stderr
    assert _miou(tmp_path / 'exported') == _miou(tmp_path / 'masked')


def test_a_checkpoint_with_compactors_is_refused_by_the_dense_config(
        runs, demo_data, tmp_path):
    root, _ = runs
    proc = run_tool([
        'tools/test.py',
        osp.join(REPO, 'tests/data/configs/demo_tiny.py'),
        str(root / 'a' / 'iter_4.pth'), '--work-dir',
        str(tmp_path / 't'), '--cfg-options', *_data_options(demo_data)
    ], check=False)
    assert proc.returncode != 0
    assert 'backbone.blocks.0.mlp.compactor.weight' in proc.stderr


def test_export_rebuilds_backbone_and_head_from_the_file_alone(
        runs, tmp_path):
    """The export's logits equal the masked model's (max abs 1e-4): the
    config builds the slim backbone and head from the file's metadata."""
    from cait_mm.analysis.model_from_config import build_model
    root, _ = runs
    ckpt = str(root / 'a' / 'iter_4.pth')
    out = str(tmp_path / 'compressed.pth')
    run_tool(['tools/deployment/export_compressed.py', CONFIG, ckpt, out])
    masked = build_model(CONFIG, checkpoint=ckpt)
    slim = build_model(CONFIG, checkpoint=out)
    assert slim.decode_head.channel_widths['fuse'] == [16]
    assert not slim.decode_head.channel_groups()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = masked(x, mode='tensor')
        got = slim(x, mode='tensor')
    assert (got - expected).abs().max() < 1e-4
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(slim.decode_head) < 0.5 * count(masked.decode_head)
