"""The Mask R-CNN configs: mmdet's recipe with our backbone and neck."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.registry import init_default_scope

from .conftest import REPO, load_config, without_scope

MMDET_MASK_RCNN = 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
DEIT_S = osp.join(REPO, 'configs/mask-rcnn/mask-rcnn_deit_s_coco.py')
CAIT_S = osp.join(REPO, 'configs/mask-rcnn/mask-rcnn_cait_s_coco.py')
DEMO = osp.join(REPO, 'configs/demo/mask-rcnn_deit_t_demo_shapes.py')
TINY_COCO = osp.join(REPO,
                     'configs/mask-rcnn/mask-rcnn_deit_t_tiny_coco_cpu.py')


def _mmdet_config(name):
    import mmdet
    return load_config(
        osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', name))


def _build(cfg):
    init_default_scope(cfg.default_scope)
    from mmdet.registry import MODELS
    cfg.model.backbone.pop('pretrained', None)
    return MODELS.build(cfg.model)


def _samples(shape):
    from mmdet.structures import DetDataSample
    return [
        DetDataSample(
            metainfo=dict(
                img_shape=shape,
                ori_shape=shape,
                pad_shape=shape,
                batch_input_shape=shape,
                scale_factor=(1., 1.)))
    ]


def test_baseline_keeps_mmdet_heads_data_and_schedule():
    ours = load_config(DEIT_S)
    mmdet = _mmdet_config(MMDET_MASK_RCNN)
    assert ours.default_scope == 'mmdet'
    assert ours.custom_imports == dict(
        imports=['cait_mm'], allow_failed_imports=False)
    assert ours.model.type == 'cait_mm.PadAwareMaskRCNN'
    backbone = ours.model.backbone
    assert (backbone.type, backbone.arch) == ('cait_mm.CAITViT', 'deit-s')
    assert backbone.pretrained == \
        'pretrain/deit_small_patch16_224-cd65a155.pth'
    assert ours.model.neck.type == 'cait_mm.SimpleFeaturePyramid'
    # mmdet's heads, as their channel-prunable subclasses
    heads = dict(rpn_head=ours.model.rpn_head,
                 bbox_head=ours.model.roi_head.bbox_head,
                 mask_head=ours.model.roi_head.mask_head)
    for name, head in heads.items():
        theirs = mmdet.model.rpn_head if name == 'rpn_head' else \
            mmdet.model.roi_head[name]
        assert head.type == 'cait_mm.CAIT' + theirs.type
        head.type = theirs.type
    for key in ('rpn_head', 'roi_head', 'train_cfg', 'test_cfg'):
        assert without_scope(ours.model[key]) == without_scope(
            mmdet.model[key]), key
    for key in ('train_dataloader', 'val_dataloader', 'test_evaluator',
                'train_cfg'):
        assert without_scope(ours[key]) == without_scope(mmdet[key]), key
    # sizes up to 1333x800, padded for the 16-pixel patches and 1/32 maps
    assert dict(type='Resize', scale=(1333, 800), keep_ratio=True) in \
        ours.train_dataloader.dataset.pipeline
    assert ours.model.data_preprocessor.pad_size_divisor % 32 == 0
    assert ours.test_evaluator.metric == ['bbox', 'segm']
    assert ours.optim_wrapper.optimizer.type == 'AdamW'
    assert ours.param_scheduler[-1].milestones == [8, 11]


def test_baseline_trains_with_vitdet_layer_decay():
    from mmengine.optim import build_optim_wrapper
    cfg = load_config(DEIT_S)
    model = _build(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    lr = {
        names[id(g['params'][0])]: g['lr']
        for g in wrapper.optimizer.param_groups
    }
    assert lr['backbone.patch_embed.proj.weight'] == pytest.approx(
        1e-4 * 0.7**13)
    assert lr['backbone.blocks.11.mlp.fc2.weight'] == pytest.approx(
        1e-4 * 0.7)
    heads = [n for n in lr if n.startswith(('neck.', 'rpn_head.',
                                            'roi_head.'))]
    assert heads and all(lr[n] == pytest.approx(1e-4) for n in heads)


def without_presets(cfg):
    """The config without the presets of ``_base_/compression/atme.py``
    (top-level values the model picks one of)."""
    return {k: v for k, v in cfg.to_dict().items()
            if not k.startswith('atme_')}


def test_cait_config_is_the_baseline_with_token_merging():
    dense, cait = load_config(DEIT_S), load_config(CAIT_S)
    reducer = cait.model.backbone.pop('token_reducer')
    assert reducer == cait.atme_deit_s == dict(type='ATME', schedule='deit-s')
    assert without_presets(cait) == dense.to_dict()
    model = _build(load_config(CAIT_S))
    assert type(model.backbone.token_reducer).__name__ == 'ATME'


def test_demo_config_uses_the_generated_classes():
    from cait_mm.datasets.demo_shapes_generator import CLASSES
    from cait_mm.utils.dataset_paths import DEMO_INSTANCE_CLASSES
    cfg = load_config(DEMO)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert dataset.type == 'CocoDataset'
        assert tuple(dataset.metainfo.classes) == CLASSES[1:]
    assert DEMO_INSTANCE_CLASSES == CLASSES[1:]
    assert cfg.model.roi_head.bbox_head.num_classes == len(CLASSES) - 1
    assert cfg.model.roi_head.mask_head.num_classes == len(CLASSES) - 1


def test_tiny_coco_config_is_the_demo_recipe_on_coco_layout():
    from mmdet.datasets import CocoDataset
    cfg, demo = load_config(TINY_COCO), load_config(DEMO)
    num_classes = len(CocoDataset.METAINFO['classes'])
    assert cfg.model.roi_head.bbox_head.num_classes == num_classes
    assert cfg.model.roi_head.mask_head.num_classes == num_classes
    assert cfg.model.neck == demo.model.neck
    for split, loader in (('train', 'train_dataloader'),
                          ('val', 'val_dataloader'),
                          ('val', 'test_dataloader')):
        dataset = cfg[loader].dataset
        assert dataset.metainfo is None  # COCO's own 80 classes
        assert dataset.ann_file == f'annotations/instances_{split}2017.json'
        assert dataset.data_prefix.img == f'{split}2017/'
        scales = [t.scale for t in dataset.pipeline if 'scale' in t]
        assert scales == [(384, 384)]
    assert cfg.val_evaluator.ann_file == (
        'data/tiny_coco/annotations/instances_val2017.json')
    cait = load_config(TINY_COCO.replace('deit_t', 'cait_t'))
    reducer = cait.model.backbone.pop('token_reducer')
    assert reducer == cait.atme_deit_t == dict(type='ATME', schedule='deit-t')
    assert without_presets(cait) == cfg.to_dict()


def _is_det_and_builds_alone(path):
    """mmdet configs, except those that start from an exported compressed
    checkpoint: they read its metadata at build time (tests/
    test_in1k_configs.py builds them from a generated file)."""
    cfg = load_config(path)
    return cfg.default_scope == 'mmdet' and \
        not cfg.model.backbone.get('compressed')


DET_CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs/**/*.py'), recursive=True)
    if '_base_' not in p and _is_det_and_builds_alone(p))


def test_det_configs_are_found():
    assert {
        'configs/mask-rcnn/mask-rcnn_deit_s_coco.py',
        'configs/mask-rcnn/mask-rcnn_cait_s_coco.py',
        'configs/mask-rcnn/mask-rcnn_deit_t_tiny_coco_cpu.py',
        'configs/demo/mask-rcnn_deit_t_demo_shapes.py'
    } <= set(DET_CONFIGS)


@pytest.mark.parametrize('path', DET_CONFIGS)
def test_every_detection_config_builds_and_predicts(path):
    cfg = load_config(osp.join(REPO, path))
    model = _build(cfg)
    model.init_weights()
    model.eval()
    num_classes = cfg.model.roi_head.bbox_head.num_classes
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 96))
        result = model.predict(torch.randn(1, 3, 64, 96), _samples(
            (64, 96)))[0]
    assert [tuple(f.shape) for f in feats
            ] == [(1, cfg.model.neck.out_channels, h, w)
                  for h, w in ((16, 24), (8, 12), (4, 6), (2, 3), (1, 2))]
    pred = result.pred_instances
    assert pred.masks.shape[-2:] == (64, 96)
    assert ((pred.labels >= 0) & (pred.labels < num_classes)).all()
