"""The membrane and aerial configs change only what they say they change."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from .conftest import REPO

DATASETS = {
    'membrane': ('cait_mm.ISBIMembraneDataset', 2),
    'dubai': ('cait_mm.DubaiAerialDataset', 6)
}


def _load(name):
    return Config.fromfile(osp.join(REPO, 'configs/upernet', name)).to_dict()


def _diff(a, b, prefix=''):
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return set().union(*(_diff(a.get(k), b.get(k), f'{prefix}{k}.')
                             for k in keys)) if keys else set()
    return set() if a == b else {prefix[:-1]}


@pytest.mark.parametrize('data', DATASETS)
def test_deit_s_changes_only_data_and_schedule_of_ade20k(data):
    ours, ade = _load(f'upernet_deit_s_{data}.py'), _load(
        'upernet_deit_s_ade20k.py')
    dataset_type, num_classes = DATASETS[data]
    assert _diff(ours['model'], ade['model']) == {
        'decode_head.num_classes', 'auxiliary_head.num_classes'
    }
    assert ours['model']['decode_head']['num_classes'] == num_classes
    for key in ('optim_wrapper', 'val_evaluator', 'test_evaluator',
                'default_scope', 'env_cfg', 'custom_imports'):
        assert ours[key] == ade[key], key
    assert _diff(ours['train_dataloader'], ade['train_dataloader']) == {
        'batch_size', 'dataset.type', 'dataset.data_root', 'dataset.pipeline'
    }
    for loader in ('val_dataloader', 'test_dataloader'):
        assert _diff(ours[loader], ade[loader]) == {
            'dataset.type', 'dataset.data_root', 'dataset.pipeline'
        }
        assert ours[loader]['dataset']['type'] == dataset_type
    assert ours['test_dataloader'] == ours['val_dataloader']
    assert ours['randomness'] == dict(seed=0)


@pytest.mark.parametrize('data', DATASETS)
def test_deit_t_swaps_only_the_backbone(data):
    tiny, small = _load(f'upernet_deit_t_{data}.py'), _load(
        f'upernet_deit_s_{data}.py')
    assert _diff(tiny, small) == {
        'model.pretrained', 'model.backbone.arch',
        'model.decode_head.in_channels', 'model.auxiliary_head.in_channels'
    }
    assert tiny['model']['pretrained'] == \
        'pretrain/deit_tiny_patch16_224-a1311bcf.pth'
    assert tiny['model']['decode_head']['in_channels'] == [192] * 4


@pytest.mark.parametrize('data', DATASETS)
def test_cpu_variant_is_smaller_and_from_scratch(data):
    cpu, gpu = _load(f'upernet_deit_t_{data}_cpu.py'), _load(
        f'upernet_deit_t_{data}.py')
    assert _diff(cpu['model'], gpu['model']) == {
        'pretrained', 'data_preprocessor.size', 'backbone.img_size',
        'decode_head.channels', 'auxiliary_head.channels'
    }
    assert cpu['model']['pretrained'] is None
    assert cpu['crop_size'] == cpu['model']['backbone']['img_size'] == \
        (256, 256)
    cpu_train, gpu_train = (c['train_dataloader'] for c in (cpu, gpu))
    assert _diff(cpu_train, gpu_train) == {'num_workers', 'dataset.pipeline'}
    cpu_steps, gpu_steps = (
        d['dataset']['pipeline'] for d in (cpu_train, gpu_train))
    assert [s for s in cpu_steps if s['type'] != 'RandomCrop'] == \
        [s for s in gpu_steps if s['type'] != 'RandomCrop']
    crop = next(s for s in cpu_steps if s['type'] == 'RandomCrop')
    assert crop['crop_size'] == (256, 256)
    assert _diff(cpu['val_dataloader'], gpu['val_dataloader']) == \
        {'num_workers'}
    assert cpu['train_cfg']['max_iters'] < gpu['train_cfg']['max_iters']


@pytest.mark.parametrize('config, embed_dims, num_classes', [
    ('upernet_deit_s_membrane.py', 384, 2),
    ('upernet_deit_t_membrane.py', 192, 2),
    ('upernet_deit_t_membrane_cpu.py', 192, 2),
    ('upernet_deit_s_dubai.py', 384, 6),
    ('upernet_deit_t_dubai.py', 192, 6),
    ('upernet_deit_t_dubai_cpu.py', 192, 6),
])
def test_config_builds_and_runs(config, embed_dims, num_classes):
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, 'configs/upernet', config))
    init_default_scope(cfg.default_scope)
    cfg.model.pretrained = None
    model = MODELS.build(cfg.model).eval()
    assert model.backbone.embed_dims == embed_dims
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 80), mode='tensor')
    assert logits.shape == (1, num_classes, 4, 5)


DATA_KEYS = {
    'dataset_type', 'data_root', 'train_pipeline', 'num_classes',
    'model.decode_head.num_classes', 'model.auxiliary_head.num_classes',
    'train_dataloader.dataset.pipeline'
} | {
    f'{loader}.dataset.{key}'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    for key in ('type', 'data_root')
}


@pytest.mark.parametrize('config', [
    'upernet_deit_s_{}.py', 'upernet_deit_t_{}.py', 'upernet_deit_t_{}_cpu.py'
])
def test_membrane_and_dubai_recipes_differ_only_in_the_data(config):
    """One recipe, two datasets: model, optimizer, schedule, hooks, loaders
    and pipelines beyond the scale range are written once."""
    membrane, dubai = (_load(config.format(d)) for d in DATASETS)
    assert _diff(membrane, dubai) == DATA_KEYS
    train = [d['train_dataloader']['dataset']['pipeline']
             for d in (membrane, dubai)]
    # Dubai: ADE20K's wide scale range and cat_max_ratio (ground resolution
    # varies between the tiles), nothing else
    assert _diff(dict(enumerate(train[0])), dict(enumerate(train[1]))) == {
        '2.ratio_range', '3.cat_max_ratio'
    }


def test_demo_is_the_cpu_recipe_on_the_shapes():
    """The demo and the CPU recipes share the CPU-sized model and the
    from-scratch schedule; the demo also drops dropout and drop path."""
    demo = Config.fromfile(
        osp.join(REPO, 'configs/demo/upernet_deit_t_demo_shapes.py'))
    cpu = _load('upernet_deit_t_membrane_cpu.py')
    demo = demo.to_dict()
    assert _diff(demo['model'], cpu['model']) == {
        'decode_head.num_classes', 'auxiliary_head.num_classes',
        'decode_head.dropout_ratio', 'auxiliary_head.dropout_ratio',
        'backbone.drop_path_rate'
    }
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg',
                'default_hooks', 'randomness'):
        assert demo[key] == cpu[key], key
