"""mmseg's and mmpretrain's models with random weights at small sizes, and
the cait_mm configs' models at the same sizes, shared by the tests of
checkpoint layouts (tests/test_models/test_backbones/test_vit_layouts.py,
tests/test_models/test_segmentors/test_openmmlab_checkpoints.py,
tests/test_tools/test_model_converters.py)."""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from .conftest import REPO

VIT = dict(embed_dims=64, num_layers=2, num_heads=2)
VIT_ARCH = dict(VIT, mlp_ratio=4.)  # CAITViT's spelling
# UperNet takes four maps: one per block
SEG_VIT = dict(VIT, num_layers=4)
SEG_ARCH = dict(SEG_VIT, mlp_ratio=4.)
SIZES = [(64, 64), (70, 90)]  # 70x90: padded patches, resampled positions
# mmseg's configs and the cait_mm configs that mirror them
MIRRORS = [
    ('vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py',
     'configs/upernet/upernet_deit_s_ade20k.py'),
    ('vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py',
     'configs/upernet/upernet_vit_b_mln_ade20k.py'),
]


def randomize(model, seed=0):
    """Random weights, norms, biases and BN statistics (not their
    initial values), scaled by fan-in so that outputs stay near 1 and a
    tolerance of 1e-5 means float rounding."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith('weight') and tensor.dim() > 1:
                fan_in = tensor[0].numel()
                tensor.normal_(0, fan_in**-0.5)
                continue
            tensor.normal_(0, 0.1)
            if name.endswith(('running_var', 'weight')):
                tensor.add_(1).abs_()
    return model


def mmseg_vit(**kwargs):
    """mmseg's ViT as its configs build it (LayerNorm eps 1e-6)."""
    from mmseg.models.backbones import VisionTransformer
    vit = VisionTransformer(
        img_size=64, **VIT, norm_cfg=dict(type='LN', eps=1e-6), **kwargs)
    vit.eval()  # mmseg's ViT.train() returns None
    return randomize(vit)


def mmpretrain_vit(distilled=False, img_size=64, **kwargs):
    from mmpretrain.models.backbones import (DistilledVisionTransformer,
                                             VisionTransformer)
    cls = DistilledVisionTransformer if distilled else VisionTransformer
    vit = cls(arch=dict(VIT, feedforward_channels=256), img_size=img_size,
              **kwargs)
    vit.eval()  # mmpretrain's ViT.train() returns None
    return randomize(vit)


def save(state, path, prefix=''):
    """Save tensors as MMEngine's checkpoints hold them; the path."""
    torch.save({'meta': {}, 'state_dict': {
        prefix + k: v for k, v in state.items()}}, path)
    return str(path)


def assert_same_outputs(ref, ours, sizes=SIZES):
    """Two backbones' output tuples agree to float rounding."""
    for size in sizes:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected, got = ref(x), ours(x)
        assert len(expected) == len(got)
        for a, b in zip(expected, got):
            if isinstance(a, (list, tuple)):  # (map, class token)
                for u, v in zip(a, b):
                    torch.testing.assert_close(v, u, rtol=0, atol=1e-5)
            else:
                torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def load_config(path, package=None):
    """A config of this repository, or of ``package``'s (``'mmseg'``)."""
    if package is None:
        return Config.fromfile(osp.join(REPO, path))
    module = __import__(package)
    return Config.fromfile(
        osp.join(osp.dirname(module.__file__), '.mim', 'configs', path))


def small_segmentor(path, package=None):
    """A config's segmentor at 64x64 with a 4-block, 64-wide ViT and narrow
    heads, in eval mode: the same overrides for mmseg's config and ours."""
    cfg = load_config(path, package)
    model = cfg.model
    model.pretrained = None
    model.data_preprocessor.size = (64, 64)
    if model.backbone.type == 'VisionTransformer':  # mmseg's
        model.backbone.update(SEG_VIT)
    else:
        model.backbone.arch = SEG_ARCH
    model.backbone.update(img_size=(64, 64), out_indices=(0, 1, 2, 3))
    if model.neck is not None:
        model.neck.update(in_channels=[64] * 4, out_channels=64)
    model.decode_head.update(in_channels=[64] * 4, channels=32,
                             num_classes=5)
    model.auxiliary_head.update(in_channels=64, channels=16, num_classes=5)
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    segmentor = MODELS.build(model)
    segmentor.eval()
    return segmentor


def small_classifier(path, package=None):
    """A config's ImageNet classifier at 64x64, 2 blocks of width 64, 10
    classes, in eval mode."""
    cfg = load_config(path, package)
    backbone = cfg.model.backbone
    if backbone.type == 'VisionTransformer':  # mmpretrain's
        backbone.arch = dict(VIT, feedforward_channels=256)
    else:
        backbone.arch = VIT_ARCH
    backbone.img_size = 64
    cfg.model.head.update(in_channels=64, num_classes=10)
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    classifier = MODELS.build(cfg.model)
    classifier.eval()
    return classifier
