import glob
import os.path as osp

import pytest
import torch
from mmengine.registry import init_default_scope

from cait_mm.models import CAITViT
from .conftest import REPO, load_config, without_scope


def _mmseg_config(name):
    import mmseg
    return load_config(
        osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', name))


MMSEG_DEIT_S = 'vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py'
BASELINE = 'configs/upernet/upernet_deit_s_ade20k.py'


def _build(cfg):
    from mmseg.registry import MODELS
    init_default_scope(cfg.default_scope)
    cfg.model.pretrained = None
    return MODELS.build(cfg.model)


def _param_shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _assert_same_head_schedule_and_data(ours, mmseg):
    """All but the backbone as mmseg's config has it."""
    for key in ('decode_head', 'auxiliary_head', 'neck', 'data_preprocessor',
                'train_cfg', 'test_cfg'):
        assert without_scope(ours.model[key]) == without_scope(
            mmseg.model[key]), key
    for key in ('train_dataloader', 'val_dataloader', 'optim_wrapper',
                'param_scheduler', 'train_cfg'):
        assert without_scope(ours[key]) == without_scope(mmseg[key]), key


def test_baseline_keeps_mmseg_head_schedule_and_data():
    ours = load_config(osp.join(REPO, BASELINE))
    mmseg = _mmseg_config(MMSEG_DEIT_S)
    assert ours.default_scope == 'mmseg'
    assert ours.model.backbone.type == 'cait_mm.CAITViT'
    assert ours.model.pretrained == mmseg.model.pretrained
    # mmseg's UPerHead, as its channel-prunable subclass
    assert ours.model.decode_head.type == 'cait_mm.CAITUPerHead'
    assert mmseg.model.decode_head.type == 'UPerHead'
    ours.model.decode_head.type = 'UPerHead'
    _assert_same_head_schedule_and_data(ours, mmseg)


def test_vit_b_mln_config_mirrors_mmseg():
    """configs/upernet/upernet_vit_b_mln_ade20k.py is mmseg's
    vit_vit-b16_mln_upernet with CAITViT in its ViT-B form, so that mmseg's
    checkpoints of it load (tests/test_models/test_segmentors)."""
    from cait_mm.core.spec import ARCHS
    ours = load_config(
        osp.join(REPO, 'configs/upernet/upernet_vit_b_mln_ade20k.py'))
    mmseg = _mmseg_config(
        'vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py')
    assert ours.model.pretrained == mmseg.model.pretrained
    ours.model.decode_head.type = 'UPerHead'
    _assert_same_head_schedule_and_data(ours, mmseg)
    backbone, theirs = ours.model.backbone, mmseg.model.backbone
    arch = ARCHS[backbone.arch]
    assert (arch['embed_dims'], arch['num_layers'], arch['num_heads'],
            arch['mlp_ratio']) == (theirs.embed_dims, theirs.num_layers,
                                   theirs.num_heads, theirs.mlp_ratio)
    for key in ('img_size', 'out_indices', 'drop_path_rate',
                'interpolate_mode'):
        assert backbone[key] == theirs[key], key
    assert backbone.final_norm == theirs.get('final_norm', False)


def test_baseline_model_matches_mmseg_vit_upernet_in_size():
    ours = _build(load_config(osp.join(REPO, BASELINE)))
    mmseg = _build(_mmseg_config(MMSEG_DEIT_S))
    assert isinstance(ours.backbone, CAITViT)
    assert _param_shapes(ours.decode_head) == _param_shapes(mmseg.decode_head)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # the same ViT, except the patch-embedding bias DeiT has and mmseg's
    # ViT drops
    assert ours.backbone.patch_embed.proj.bias.numel() == 384
    assert count(ours.backbone) == count(mmseg.backbone) + 384
    assert count(ours) == count(mmseg) + 384
    ours.eval()
    with torch.no_grad():
        logits = ours(torch.randn(1, 3, 64, 96), mode='tensor')
    assert logits.shape == (1, 150, 4, 6)  # decode head: 1/16


def test_demo_config_builds_and_runs():
    cfg = load_config(
        osp.join(REPO, 'configs/demo/upernet_deit_t_demo_shapes.py'))
    assert cfg.train_dataloader.dataset.type == 'cait_mm.DemoShapesDataset'
    model = _build(cfg).eval()
    assert model.backbone.embed_dims == 192
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64), mode='tensor').shape == \
            (2, 6, 4, 4)


def _builds_alone(cfg):
    """Whether a config's model builds without files (those that start
    from an exported compressed checkpoint read its metadata at build time:
    tests/test_in1k_configs.py builds them from a generated file)."""
    return not cfg.model.get('backbone', {}).get('compressed')


SEG_CONFIGS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs/**/*.py'),
                                            recursive=True)
    if '_base_' not in p and load_config(p).default_scope == 'mmseg'
    and _builds_alone(load_config(p)))


@pytest.mark.parametrize('path', SEG_CONFIGS)
def test_every_segmentation_config_builds_and_runs(path):
    cfg = load_config(osp.join(REPO, path))
    model = _build(cfg).eval()
    # dense and compressed rows run the same post-processing
    assert type(model).__name__ == 'TokenReducerEncoderDecoder'
    assert type(model.decode_head).__name__ == 'CAITUPerHead'
    num_classes = cfg.model.decode_head.num_classes
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 96), mode='tensor')
    # at 1/16 (the ViT's maps), or the finest scale of a MultiLevelNeck
    scale = cfg.model.neck.scales[0] if cfg.model.neck else 1
    assert logits.shape == (1, num_classes, 4 * scale, 6 * scale)


@pytest.mark.parametrize('path', [
    'configs/upernet/upernet_cait_s_cityscapes.py',
    'configs/upernet/upernet_cait_s_synapse.py',
    'configs/upernet/upernet_cait_s_potsdam.py'
])
def test_other_datasets_keep_the_ade20k_model_and_schedule(path):
    ade = load_config(
        osp.join(REPO, 'configs/upernet/upernet_cait_s_ade20k.py'))
    other = load_config(osp.join(REPO, path))
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg'):
        assert other[key] == ade[key], key
    for key in ('pretrained', 'neck'):
        assert other.model[key] == ade.model[key], key
    backbone = {**other.model.backbone, 'img_size': (512, 512)}
    assert backbone == ade.model.backbone
    for head in ('decode_head', 'auxiliary_head'):
        assert {**other.model[head], 'num_classes': 150} == ade.model[head]


def test_unknown_config_key_is_reported():
    cfg = load_config(osp.join(REPO, BASELINE))
    cfg.model.backbone.embed_dim = 384  # timm's spelling, not ours
    with pytest.raises(TypeError, match='embed_dim'):
        _build(cfg)


# folder: what its configs' names start with
FOLDERS = {
    'upernet': 'upernet_',
    'mask-rcnn': 'mask-rcnn_',
    'imagenet': '',
    'demo': ''
}


def test_configs_sit_in_their_folders():
    """mmseg's habit: one folder per model (and the ImageNet stage), shared
    pieces under _base_/, nothing loose in configs/."""
    for path in glob.glob(osp.join(REPO, 'configs/**/*.py'), recursive=True):
        rel = osp.relpath(path, osp.join(REPO, 'configs'))
        folder, name = rel.split(osp.sep, 1)
        if folder == '_base_':
            assert name.split(osp.sep)[0] in ('models', 'datasets',
                                              'schedules', 'compression'), rel
            continue
        assert folder in FOLDERS, rel
        assert name.startswith(FOLDERS[folder]), rel
        assert folder != 'imagenet' or name.endswith('_in1k.py'), rel


def _diff(a, b, prefix=''):
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return set().union(*(_diff(a.get(k), b.get(k), f'{prefix}{k}.')
                             for k in keys)) if keys else set()
    return set() if a == b else {prefix[:-1]}


def _compression_helpers():
    """The named settings the compression bases add to a config."""
    return set().union(*(load_config(p).keys() for p in glob.glob(
        osp.join(REPO, 'configs/_base_/compression/*.py'))))


def _parent(name):
    """The config a compressed UperNet config adds its compression to."""
    if '_cdcp-whole' in name:
        return name.replace('_cdcp-whole', '_cdcp')
    if '_slim-half' in name:
        return name.replace('_slim-half', '')
    if '_cdcp' in name:
        return name.replace('_cdcp', '')
    for method in ('_cait_', '_tps_', '_tome_', '_evit_'):
        name = name.replace(method, '_deit_')
    return name


COMPRESSED_SEG = sorted(
    osp.basename(p)
    for pattern in ('upernet_cait_*.py', 'upernet_tps_*.py',
                    'upernet_tome_*.py', 'upernet_evit_*.py')
    for p in glob.glob(osp.join(REPO, 'configs/upernet', pattern)))


def test_compressed_segmentation_configs_have_their_parent():
    """Every compressed UperNet config but the ImageNet-initialised one and
    the other mmseg datasets' (tested above) has the config it compresses."""
    alone = {
        n
        for n in COMPRESSED_SEG
        if not osp.isfile(osp.join(REPO, 'configs/upernet', _parent(n)))
    }
    assert alone == {
        'upernet_cait_s_ade20k_from_in1k.py', 'upernet_cait_s_cityscapes.py',
        'upernet_cait_s_potsdam.py', 'upernet_cait_s_synapse.py'
    }
    assert len(COMPRESSED_SEG) - len(alone) == 25


@pytest.mark.parametrize('name', [
    n for n in COMPRESSED_SEG
    if osp.isfile(osp.join(REPO, 'configs/upernet', _parent(n)))
])
def test_compressed_config_is_its_dense_config_plus_compression(name):
    """upernet_cait_X = upernet_deit_X + ATME at that size; upernet_tps_X =
    upernet_deit_X + TPS; upernet_cait_X_cdcp_Y = upernet_cait_X_Y + CDCP;
    upernet_cait_X_cdcp-whole_Y = upernet_cait_X_cdcp_Y + CDCP on the head;
    upernet_cait_X_slim-half_Y = upernet_cait_X_Y at half the channels:
    nothing else differs."""
    load = lambda n: load_config(  # noqa: E731
        osp.join(REPO, 'configs/upernet', n)).to_dict()
    ours = load(name)
    helpers = _compression_helpers()
    size = name.split('_')[2]
    parent = load(_parent(name))
    if '_cdcp-whole' in name:
        assert _diff(ours, parent) - helpers == {
            'model.decode_head.channel_prune', 'custom_hooks'
        }
        assert ours['model']['decode_head']['channel_prune'] == dict(
            groups=('ppm', 'lateral', 'fpn', 'fuse'))
        hook, = ours['custom_hooks']
        assert hook == dict(
            parent['custom_hooks'][0],
            ratios=dict(qk=0.5, v=0.5, mlp=0.5, ppm=0.5, lateral=0.5,
                        fpn=0.5, fuse=0.5))
        return
    if '_slim-half' in name:
        assert _diff(ours, parent) - helpers == {
            'model.pretrained', 'model.backbone.channel_widths',
            'model.decode_head.channel_widths'
        }
        assert ours['model']['decode_head']['channel_widths'] == dict(
            ppm=0.5, lateral=0.5, fpn=0.5, fuse=0.5)
        return
    if '_cdcp' in name:
        assert _diff(ours, parent) - helpers == {
            'model.backbone.channel_prune', 'custom_hooks',
            'optim_wrapper.paramwise_cfg.custom_keys.compactor'
        }
        assert ours['model']['backbone']['channel_prune'] == dict(
            groups=('qk', 'v', 'mlp'))
        hook, = ours['custom_hooks']
        assert hook['type'] == 'cait_mm.CDCPHook'
        assert hook['ratios'] == dict(qk=0.5, v=0.5, mlp=0.5)
        assert hook['end'] <= ours['train_cfg']['max_iters']
        assert ours['optim_wrapper']['paramwise_cfg']['custom_keys'][
            'compactor'] == dict(decay_mult=0.)
        return
    assert _diff(ours, parent) - helpers == {'model.backbone.token_reducer'}
    reducer = ours['model']['backbone']['token_reducer']
    if name.startswith('upernet_cait_'):
        assert reducer['type'] == 'ATME'
        assert reducer['schedule'] == f'deit-{size}'
    elif name.startswith('upernet_tps_'):
        assert reducer == dict(
            type='TPS', blocks=(3, 6, 9), keep_ratio=0.7, score='attn')
    else:  # the peers, at the ATME preset's block FLOPs at 512x512
        from cait_mm.core import build_token_reducer
        from cait_mm.core.atme_schedules import schedule_flops
        assert reducer['type'] == name.split('_')[1].replace(
            'tome', 'ToMe').replace('evit', 'EViT')
        dims = dict(s=384, t=192)[size]
        target = schedule_flops(f'deit-{size}', (32, 32), dims, 12)
        fraction = build_token_reducer(reducer, 12, dims).flops_fraction(
            (32, 32))
        assert abs(fraction - target) <= 0.03 * target
