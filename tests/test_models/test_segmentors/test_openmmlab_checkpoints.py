"""A segmentor trained with mmseg's ViT UperNet config, and a classifier
trained with mmpretrain's DeiT config, load whole into the cait_mm configs
that mirror them and compute the same outputs (random weights, small
sizes)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from cait_mm.engine.strict_load import load_model_checkpoint
from cait_mm.utils.checkpoint_files import (CheckpointError,
                                            load_local_checkpoint)
from ...conftest import REPO
from ..test_backbones.test_vit_layouts import randomize

SMALL = dict(embed_dims=64, num_layers=4, num_heads=2)
ARCH = dict(SMALL, mlp_ratio=4.)
OUT = (0, 1, 2, 3)


def _config(path, package=None):
    if package is not None:
        module = __import__(package)
        path = osp.join(osp.dirname(module.__file__), '.mim', 'configs',
                        path)
    else:
        path = osp.join(REPO, path)
    return Config.fromfile(path)


def _small_segmentor(path, package=None):
    """A config's segmentor at 64x64 with a 4-block, 64-wide ViT and narrow
    heads: the same overrides for mmseg's config and ours."""
    cfg = _config(path, package)
    model = cfg.model
    model.pretrained = None
    model.data_preprocessor.size = (64, 64)
    if model.backbone.type == 'VisionTransformer':  # mmseg's
        model.backbone.update(SMALL)
    else:
        model.backbone.arch = ARCH
    model.backbone.update(img_size=(64, 64), out_indices=OUT)
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


def _save(model, path):
    torch.save({'meta': {'mmseg_version': '1.2.2'},
                'state_dict': model.state_dict()}, path)
    return load_local_checkpoint(str(path))


MIRRORS = [
    ('vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py',
     'configs/upernet/upernet_deit_s_ade20k.py'),
    ('vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py',
     'configs/upernet/upernet_vit_b_mln_ade20k.py'),
]


@pytest.mark.parametrize('theirs, ours', MIRRORS)
def test_mmseg_segmentor_checkpoint_gives_its_outputs(theirs, ours,
                                                      tmp_path):
    ref = randomize(_small_segmentor(theirs, 'mmseg'))
    checkpoint = _save(ref, tmp_path / 'mmseg.pth')
    model = _small_segmentor(ours)
    load_model_checkpoint(model, checkpoint, 'mmseg.pth')
    for size in [(64, 64), (70, 90)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected = ref(x, mode='tensor')
            got = model(x, mode='tensor')
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
            # mmseg's post-processing: logits resized to the input
            expected = ref(x, mode='predict')
            got = model(x, mode='predict')
        for a, b in zip(expected, got):
            assert a.seg_logits.shape[-2:] == size
            torch.testing.assert_close(b.seg_logits.data,
                                       a.seg_logits.data, rtol=0,
                                       atol=1e-5)


def test_a_segmentor_of_another_structure_fails_naming_keys(tmp_path):
    """mmseg's DeiT-S UperNet (no neck) into the MultiLevelNeck config."""
    theirs, _ = MIRRORS[0]
    checkpoint = _save(_small_segmentor(theirs, 'mmseg'), tmp_path / 'a.pth')
    model = _small_segmentor(MIRRORS[1][1])
    with pytest.raises(RuntimeError, match='missing keys') as err:
        load_model_checkpoint(model, checkpoint, 'a.pth')
    assert 'neck.convs.0.conv.weight' in str(err.value)
    assert '''"backbone.*" read as mmseg's VisionTransformer''' in str(
        err.value)


def test_a_segmentor_with_another_backbone_fails_naming_its_keys(tmp_path):
    cfg = _config('segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
                  'mmseg')
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = None
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    checkpoint = _save(MODELS.build(cfg.model), tmp_path / 'segformer.pth')
    model = _small_segmentor(MIRRORS[0][1])
    with pytest.raises(CheckpointError, match='not in a ViT layout') as err:
        load_model_checkpoint(model, checkpoint, 'segformer.pth')
    assert '"backbone.*"' in str(err.value)
    assert 'layers.N.N.N.attn.attn.in_proj_weight' in str(err.value)


def _small_classifier(path, package=None):
    cfg = _config(path, package)
    backbone = cfg.model.backbone
    if backbone.type == 'VisionTransformer':  # mmpretrain's
        backbone.arch = dict(SMALL, feedforward_channels=256)
    else:
        backbone.arch = ARCH
    backbone.img_size = 64
    cfg.model.head.update(in_channels=64, num_classes=10)
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    classifier = MODELS.build(cfg.model)
    classifier.eval()
    return classifier


def test_mmpretrain_classifier_checkpoint_gives_its_logits(tmp_path):
    ref = randomize(_small_classifier('deit/deit-small_4xb256_in1k.py',
                                      'mmpretrain'))
    checkpoint = _save(ref, tmp_path / 'mmpretrain.pth')
    model = _small_classifier('configs/imagenet/deit-s_in1k.py')
    load_model_checkpoint(model, checkpoint, 'mmpretrain.pth')
    for size in [(64, 64), (70, 90)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(
                model(x, mode='tensor'), ref(x, mode='tensor'), rtol=0,
                atol=1e-5)
