"""A segmentor trained with mmseg's ViT UperNet config, and a classifier
trained with mmpretrain's DeiT config, load whole into the cait_mm configs
that mirror them and compute the same outputs (random weights, small
sizes)."""
import pytest
import torch
from mmengine.registry import init_default_scope

from cait_mm.engine.strict_load import load_model_checkpoint
from cait_mm.utils.checkpoint_files import (CheckpointError,
                                            load_local_checkpoint)
from ...openmmlab_models import (MIRRORS, SIZES, load_config, randomize,
                                 small_classifier, small_segmentor)


def _save(model, path):
    torch.save({'meta': {'mmseg_version': '1.2.2'},
                'state_dict': model.state_dict()}, path)
    return load_local_checkpoint(str(path))


@pytest.mark.parametrize('theirs, ours', MIRRORS)
def test_mmseg_segmentor_checkpoint_gives_its_outputs(theirs, ours,
                                                      tmp_path):
    ref = randomize(small_segmentor(theirs, 'mmseg'))
    checkpoint = _save(ref, tmp_path / 'mmseg.pth')
    model = small_segmentor(ours)
    load_model_checkpoint(model, checkpoint, 'mmseg.pth')
    for size in SIZES:
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
    checkpoint = _save(small_segmentor(theirs, 'mmseg'), tmp_path / 'a.pth')
    model = small_segmentor(MIRRORS[1][1])
    with pytest.raises(RuntimeError, match='missing keys') as err:
        load_model_checkpoint(model, checkpoint, 'a.pth')
    assert 'neck.convs.0.conv.weight' in str(err.value)
    assert '''"backbone.*" read as mmseg's VisionTransformer''' in str(
        err.value)


def test_a_segmentor_with_another_backbone_fails_naming_its_keys(tmp_path):
    cfg = load_config(
        'segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py', 'mmseg')
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = None
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    checkpoint = _save(MODELS.build(cfg.model), tmp_path / 'segformer.pth')
    model = small_segmentor(MIRRORS[0][1])
    with pytest.raises(CheckpointError, match='not in a ViT layout') as err:
        load_model_checkpoint(model, checkpoint, 'segformer.pth')
    assert '"backbone.*"' in str(err.value)
    assert 'layers.N.N.N.attn.attn.in_proj_weight' in str(err.value)


def test_mmpretrain_classifier_checkpoint_gives_its_logits(tmp_path):
    ref = randomize(
        small_classifier('deit/deit-small_4xb256_in1k.py', 'mmpretrain'))
    checkpoint = _save(ref, tmp_path / 'mmpretrain.pth')
    model = small_classifier('configs/imagenet/deit-s_in1k.py')
    load_model_checkpoint(model, checkpoint, 'mmpretrain.pth')
    for size in SIZES:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(
                model(x, mode='tensor'), ref(x, mode='tensor'), rtol=0,
                atol=1e-5)
