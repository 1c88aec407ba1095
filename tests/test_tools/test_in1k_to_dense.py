"""From ImageNet to dense tasks, end to end through the tools.

A generated class-folder set stands in for ImageNet and a small timm DeiT
file for the official DeiT weights: compress (tools/train.py: ATME + CDCP +
distillation), evaluate (tools/test.py), export one compressed checkpoint
(tools/deployment/export_compressed.py), then initialise a UperNet and a Mask
R-CNN from that file through MMEngine, and check that their backbones compute
what the classifier's trunk computed.
"""
import os.path as osp
import pickle
import re

import pytest
import torch
from mmengine.config import Config

import cait_mm  # noqa: F401  (lets torch.load read MMEngine checkpoints)
from ..conftest import REPO, run_tool
from ..fake_in1k import make_image_folder, timm_deit_kwargs, write_timm_deit

pytest.importorskip('mmpretrain')

CLS_CONFIG = osp.join(REPO, 'tests/data/configs/cait_tiny_imagefolder.py')
SEG_CONFIG = osp.join(REPO, 'tests/data/configs/demo_tiny.py')
DET_CONFIG = osp.join(REPO, 'tests/data/configs/mask_rcnn_demo_tiny.py')
ARCH = dict(embed_dims=64, num_layers=4, num_heads=2, mlp_ratio=2.)


def _cls_options(data_root, deit):
    return [
        f'{loader}.dataset.data_root={data_root}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ] + [
        f'model.backbone.pretrained={deit}',
        f'model.head.init_cfg.checkpoint={deit}',
        f'model.teacher.checkpoint={deit}',
    ]


def _seg_options(data_root, compressed, max_iters, *extra):
    return [
        f'{loader}.dataset.data_root={data_root}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ] + [
        f'model.backbone.compressed={compressed}',
        f'train_cfg.max_iters={max_iters}', *extra
    ]


def _top1(log):
    return float(re.findall(r'accuracy/top1: ([\d.]+)', log)[-1])


def _load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def _scores(path):
    with open(path, 'rb') as f:
        return torch.stack([p['pred_score'] for p in pickle.load(f)])


@pytest.fixture(scope='module')
def stage(tmp_path_factory):
    """Compress, evaluate and export once for the whole module."""
    root = tmp_path_factory.mktemp('in1k')
    data = make_image_folder(str(root / 'imagefolder'))
    deit = str(root / 'deit_tiny.pth')
    write_timm_deit(deit, **timm_deit_kwargs(ARCH, 64, 6))
    options = _cls_options(data, deit)
    work = root / 'work'
    train = run_tool(['tools/train.py', CLS_CONFIG, '--work-dir',
                      str(work), '--cfg-options', *options])
    ckpt = str(work / 'epoch_2.pth')
    test = run_tool([
        'tools/test.py', CLS_CONFIG, ckpt, '--work-dir',
        str(root / 'test'), '--out',
        str(root / 'pred.pkl'), '--cfg-options', *options
    ])
    out = str(root / 'cait_tiny_in1k.pth')
    export = run_tool(['tools/deployment/export_compressed.py', CLS_CONFIG,
                       ckpt, out, '--cfg-options', *options])
    return dict(root=root, data=data, deit=deit, options=options, ckpt=ckpt,
                out=out, train=train, test=test, export=export)


def test_compression_trains_with_atme_cdcp_and_distillation(stage):
    log = stage['train'].stdout + stage['train'].stderr
    for name in ('loss_distill', 'cdcp/qk_sparsity', 'accuracy/top1'):
        assert name in log, name
    # the CDCP ramp reached its final ratio: a quarter of each group
    assert re.findall(r'cdcp/mlp_sparsity: ([\d.]+)', log)[-1] == '0.2500'


def test_the_teacher_is_not_in_the_student_checkpoint(stage):
    ckpt = _load(stage['ckpt'])
    assert not any('teacher' in k for k in ckpt['state_dict'])
    assert any(k.startswith('backbone.') for k in ckpt['state_dict'])
    # the optimizer holds the student's parameters and nothing else
    held = sum(len(g['params']) for g in ckpt['optimizer']['param_groups'])
    trainable = [k for k in ckpt['state_dict']
                 if not k.endswith('.pruned')]  # CDCP's selection buffers
    assert held == len(trainable)


def test_tools_test_reports_top1_and_dumps_predictions(stage):
    log = stage['test'].stdout + stage['test'].stderr
    assert 0 <= _top1(log) <= 100 and 'accuracy/top5' in log
    assert _scores(stage['root'] / 'pred.pkl').shape == (12, 6)


def test_export_is_tensors_and_plain_types_without_teacher(stage):
    checkpoint = _load(stage['out'])  # weights_only: no other type inside
    state = checkpoint['state_dict']
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert not any('teacher' in k or 'compactor' in k for k in state)
    assert {'head.layers.head.weight', 'backbone.cls_token'} <= set(state)
    info = checkpoint['meta']['cait_mm']
    assert info['prefix'] == 'backbone.'
    widths = info['spec']['channel_widths']
    assert widths[0] == dict(qk_dim=24, v_dim=24, mlp_hidden=96)
    reducer = info['spec']['token_reducer']
    assert reducer['type'] == 'ATME'
    assert reducer['schedule'] == [[1, 'h', 0.5], [2, 'v', 0.5]]


def test_the_exported_classifier_scores_what_the_masked_one_did(stage):
    """The compact model (channels removed) classifies like the trained
    model with its channels masked, image by image."""
    out, root = stage['out'], stage['root']
    proc = run_tool([
        'tools/test.py', CLS_CONFIG, out, '--work-dir',
        str(root / 'test_exported'), '--out',
        str(root / 'pred_exported.pkl'), '--cfg-options', *stage['options'],
        f'model.backbone.compressed={out}',
        'model.backbone.channel_prune=None', 'model.backbone.pretrained=None'
    ])
    log = stage['test'].stdout + stage['test'].stderr
    assert _top1(proc.stdout + proc.stderr) == _top1(log)
    torch.testing.assert_close(
        _scores(root / 'pred_exported.pkl'), _scores(root / 'pred.pkl'),
        rtol=0, atol=1e-5)


def _classifier_trunk(stage, out_indices):
    """The trained classifier's CAITViT, compacted, returning the feature
    maps of ``out_indices`` without the final norm (as dense backbones
    do)."""
    from cait_mm.analysis.model_from_config import build_model
    overrides = dict(option.split('=', 1) for option in stage['options'])
    classifier = build_model(CLS_CONFIG, overrides, 'cpu', stage['ckpt'])
    trunk = classifier.backbone.compact()
    trunk.out_type, trunk.out_indices, trunk.final_norm = \
        'featmap', out_indices, False
    return trunk


DENSE = {
    # scope: (test config, out_indices, model output for a 2x3x64x64 batch)
    'mmseg': (SEG_CONFIG, (0, 1, 2, 3), (2, 6, 4, 4)),
    'mmdet': (DET_CONFIG, (3, ), None),
}


@pytest.mark.parametrize('scope', DENSE)
def test_a_dense_backbone_from_the_file_computes_the_classifier_trunk(
        stage, scope):
    """UperNet's and Mask R-CNN's backbones, built from the file alone and
    initialised as MMEngine does, equal the trained classifier's trunk."""
    from mmengine.registry import init_default_scope
    config, out_indices, output = DENSE[scope]
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    cfg = Config.fromfile(config)
    cfg.model.backbone.compressed = stage['out']
    init_default_scope(scope)
    model = registry.build(cfg.model)
    model.init_weights()  # what MMEngine's Runner does before training
    backbone = model.backbone.eval()
    assert backbone.channel_widths[0] == dict(qk_dim=24, v_dim=24,
                                              mlp_hidden=96)
    assert backbone.token_reducer.config()['schedule'] == [[1, 'h', 0.5],
                                                           [2, 'v', 0.5]]
    trunk = _classifier_trunk(stage, out_indices)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = backbone(x), trunk(x)
        assert len(ours) == len(theirs) == len(out_indices)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        if output is not None:
            assert model.eval()(x, mode='tensor').shape == output


def test_dense_training_starts_from_the_file_and_resumes_from_its_own(
        stage, demo_data, tmp_path):
    """MMEngine initialises (init_weights: the compressed file) before it
    loads or resumes a checkpoint, so --resume continues the dense run
    instead of restarting from the file."""
    out = stage['out']
    train = ['tools/train.py', SEG_CONFIG, '--work-dir']
    # with lr 0 the weights after training are the initial ones: the file's
    run_tool(train + [
        str(tmp_path / 'frozen'), '--cfg-options',
        *_seg_options(demo_data, out, 2, 'optim_wrapper.optimizer.lr=0')
    ])
    exported = _load(out)['state_dict']
    start = _load(tmp_path / 'frozen' / 'iter_2.pth')['state_dict']
    backbone = {k: v for k, v in start.items() if k.startswith('backbone.')}
    assert backbone.keys() == {
        k for k in exported if k.startswith('backbone.') and
        not k.startswith('backbone.norm.')  # the dense backbone has none
    }
    for key, value in backbone.items():
        torch.testing.assert_close(value, exported[key], rtol=0, atol=0)

    # 4 iterations straight == 2, then --resume to 4
    run_tool(train + [str(tmp_path / 'a'), '--cfg-options',
                      *_seg_options(demo_data, out, 4)])
    run_tool(train + [str(tmp_path / 'b'), '--cfg-options',
                      *_seg_options(demo_data, out, 2)])
    resumed = run_tool(train + [str(tmp_path / 'b'), '--resume',
                                '--cfg-options',
                                *_seg_options(demo_data, out, 4)])
    assert 'iter_2.pth' in resumed.stdout + resumed.stderr
    trained = _load(tmp_path / 'b' / 'iter_2.pth')['state_dict']
    assert any(not torch.equal(trained[k], exported[k]) for k in backbone)
    straight = _load(tmp_path / 'a' / 'iter_4.pth')['state_dict']
    continued = _load(tmp_path / 'b' / 'iter_4.pth')['state_dict']
    for key, value in straight.items():
        torch.testing.assert_close(continued[key], value, rtol=0, atol=0,
                                   msg=key)


def test_a_file_that_does_not_fit_the_config_fails_clearly(stage):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    # the shipped DeiT-S configs and the test-sized file
    for name, scope in (('upernet/upernet_cait_s_ade20k_from_in1k.py',
                         'mmseg'),
                        ('mask-rcnn/mask-rcnn_cait_s_coco_from_in1k.py',
                         'mmdet')):
        cfg = Config.fromfile(osp.join(REPO, 'configs', name))
        cfg.model.backbone.compressed = stage['out']
        init_default_scope(scope)
        registry = __import__(f'{scope}.registry',
                              fromlist=['MODELS']).MODELS
        with pytest.raises(ValueError, match='does not fit this CAITViT '
                           'config: arch'):
            registry.build(cfg.model)
    init_default_scope('mmseg')
    # hand-written widths (the dense ones) that are not the file's
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.model.backbone.compressed = stage['out']
    cfg.model.backbone.channel_widths = [
        dict(qk_dim=32, v_dim=32, mlp_hidden=128)
    ] * 4
    with pytest.raises(ValueError, match='channel_widths: config'):
        MODELS.build(cfg.model)
    # the file's own widths written out are accepted
    cfg.model.backbone.channel_widths = _load(
        stage['out'])['meta']['cait_mm']['spec']['channel_widths']
    assert MODELS.build(cfg.model).backbone.channel_widths[3] == dict(
        qk_dim=24, v_dim=24, mlp_hidden=96)
