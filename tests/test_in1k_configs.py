"""The ImageNet-stage configs: DeiT's recipe on mmpretrain's bases, CAIT's
compression on top, and the dense configs that start from its export."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

from cait_mm.models import CAITViT
from cait_mm.models.backbones import export_compressed
from .conftest import REPO

pytest.importorskip('mmpretrain')

SIZES = {'t': ('tiny', 192), 's': ('small', 384), 'b': ('base', 768)}
DEIT_FILES = {
    't': 'deit_tiny_patch16_224-a1311bcf.pth',
    's': 'deit_small_patch16_224-cd65a155.pth',
    'b': 'deit_base_patch16_224-b5f2ef4d.pth',
}


def _load(name):
    return Config.fromfile(osp.join(REPO, 'configs', name))


@pytest.mark.parametrize('size', SIZES)
def test_dense_reference_is_deits_recipe(size):
    cfg = _load(f'imagenet/deit-{size}_in1k.py')
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.model.type == 'ImageClassifier'
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch) == ('cait_mm.CAITViT',
                                              f'deit-{size}')
    assert backbone.out_type == 'cls_token' and backbone.final_norm
    assert cfg.model.head.in_channels == SIZES[size][1]
    assert cfg.model.head.loss == dict(
        type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    assert cfg.model.train_cfg.augments == [
        dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == (
        'AdamW', 5e-4 * 1024 / 512, 0.05)
    assert cfg.auto_scale_lr.base_batch_size == 1024
    gpus = {'t': 4, 's': 4, 'b': 16}[size]
    assert cfg.train_dataloader.batch_size * gpus == 1024
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, warmup.by_epoch) == ('LinearLR', 5,
                                                          True)
    assert (cosine.type, cosine.begin) == ('CosineAnnealingLR', 5)
    assert cfg.train_cfg.max_epochs == 300
    assert 'RandAugment' in [t.type for t in cfg.train_pipeline]
    assert (cfg.val_evaluator.type, cfg.val_evaluator.topk) == ('Accuracy',
                                                                (1, 5))
    assert cfg.train_dataloader.dataset.type == 'ImageNet'


@pytest.mark.parametrize('size', SIZES)
def test_cait_config_compresses_the_dense_recipe(size):
    name = SIZES[size][0]
    cait, dense = _load(f'imagenet/cait_deit-{size}_in1k.py'), _load(
        f'imagenet/deit-{size}_in1k.py')
    deit = f'pretrain/{DEIT_FILES[size]}'
    model = cait.model
    assert model.type == 'cait_mm.DistillImageClassifier'
    assert model.backbone.token_reducer == dict(type='ATME',
                                                schedule=f'deit-{size}')
    assert model.backbone.channel_prune == dict(groups=('qk', 'v', 'mlp'))
    assert model.backbone.pretrained == deit
    assert model.head.init_cfg == dict(type='cait_mm.PretrainedHead',
                                       checkpoint=deit)
    assert model.teacher == dict(type='cait_mm.TimmTeacher',
                                 model=f'deit_{name}_patch16_224',
                                 checkpoint=deit)
    assert model.distill_loss.loss_weight + model.head.loss.loss_weight == 1
    hook, = cait.custom_hooks
    assert hook.type == 'cait_mm.CDCPHook'
    assert set(hook.ratios) == {'qk', 'v', 'mlp'}
    assert cait.optim_wrapper.paramwise_cfg.custom_keys['compactor'] == dict(
        decay_mult=0.0)
    for key in ('train_dataloader', 'val_dataloader', 'param_scheduler',
                'train_cfg', 'val_evaluator'):
        assert cait[key] == dense[key], key
    assert cait.optim_wrapper.optimizer == dense.optim_wrapper.optimizer


@pytest.mark.parametrize('path', [
    'imagenet/deit-t_in1k.py', 'imagenet/cait_deit-t_in1k.py',
    'imagenet/cait_deit-s_in1k.py', 'imagenet/tps_deit-s_in1k.py'
])
def test_classification_configs_build_and_classify(path):
    from mmpretrain.registry import MODELS
    cfg = _load(path)
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.pop('pretrained', None)
    model = MODELS.build(cfg.model).eval()
    assert isinstance(model.backbone, CAITViT)
    if 'teacher' in cfg.model:
        assert not any('teacher' in k for k in model.state_dict())
        assert type(model.teacher.model).__name__ == 'VisionTransformer'
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224), mode='tensor').shape == (
            1, 1000)


def test_compactors_get_no_weight_decay():
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS
    cfg = _load('imagenet/cait_deit-t_in1k.py')
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.pop('pretrained')
    model = MODELS.build(cfg.model)
    decay = {}
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            decay[names[id(param)]] = group['weight_decay']
    compactors = [n for n in decay if 'compactor' in n]
    assert len(compactors) == 12 * 3
    assert all(decay[n] == 0 for n in compactors)
    assert decay['backbone.blocks.0.attn.qkv.weight'] == 0.05


def test_tps_config_learns_its_scores_with_distillation():
    cfg = _load('imagenet/tps_deit-s_in1k.py')
    assert cfg.model.backbone.token_reducer == dict(
        type='TPS', blocks=(3, 6, 9), keep_ratio=0.7, score='learned')
    assert cfg.model.distill_loss.mode == 'soft'
    assert cfg.train_cfg.max_epochs == 30


class _Classifier(nn.Module):

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(384, 1000)


@pytest.fixture(scope='module')
def deit_s_export(tmp_path_factory):
    """A DeiT-S-sized compressed file (random weights, half of the MLP
    channels pruned, ATME 'deit-s'), as the ImageNet stage exports it."""
    backbone = CAITViT(arch='deit-s', out_type='cls_token', final_norm=True,
                       channel_prune=dict(groups=('mlp', )),
                       token_reducer=dict(type='ATME', schedule='deit-s'))
    for _, group in backbone.channel_groups()['mlp']:
        group.select(0.5)
    path = str(tmp_path_factory.mktemp('export') / 'cait_deit-s_in1k.pth')
    export_compressed(_Classifier(backbone), path)
    return path


@pytest.mark.parametrize('name, scope', [
    ('upernet/upernet_cait_s_ade20k_from_in1k.py', 'mmseg'),
    ('mask-rcnn/mask-rcnn_cait_s_coco_from_in1k.py', 'mmdet'),
])
def test_dense_configs_build_from_a_deit_s_export(deit_s_export, name,
                                                  scope):
    cfg = _load(name)
    assert cfg.default_scope == scope
    assert cfg.model.backbone.compressed == 'checkpoints/cait_deit-s_in1k.pth'
    cfg.model.backbone.compressed = deit_s_export
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(cfg.model)
    model.init_weights()
    backbone = model.backbone.eval()
    assert backbone.channel_widths[0]['mlp_hidden'] == 768
    assert backbone.token_reducer.config()['schedule'][0] == [3, 'h', 0.5]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        maps = backbone(x)
        assert maps[-1].shape == (1, 384, 4, 6)
        if scope == 'mmseg':
            assert model.eval()(x, mode='tensor').shape == (1, 150, 4, 6)
    # position embeddings resampled from the file's 14x14 grid to 512x512's
    if scope == 'mmseg':
        assert backbone.pos_embed.shape == (1, 1 + 32 * 32, 384)
