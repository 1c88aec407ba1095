"""CAITViT reads mmseg's and mmpretrain's ViT checkpoints (built here with
random weights) and computes what their ViT computes."""
import pytest
import torch

from cait_mm.models import CAITViT
from cait_mm.models.backbones.vit_layouts import (MMPRETRAIN, MMSEG, TIMM,
                                                  convert_checkpoint,
                                                  detect_layout)
from cait_mm.utils.checkpoint_files import CheckpointError
from ...openmmlab_models import (VIT_ARCH, assert_same_outputs, mmpretrain_vit,
                                 mmseg_vit, save)


@pytest.mark.parametrize('kwargs', [
    dict(out_indices=(0, 1)),
    dict(out_indices=-1, final_norm=True),
    dict(out_indices=(0, 1), qkv_bias=False),
    dict(out_indices=(1, ), with_cls_token=False),
    dict(out_indices=(0, 1), output_cls_token=True, final_norm=True),
    dict(out_indices=(0, 1), interpolate_mode='bilinear'),
])
@pytest.mark.parametrize('prefix', ['', 'backbone.'])
def test_mmseg_vit_checkpoint_gives_its_features(kwargs, prefix, tmp_path):
    """A bare ViT (vit2mmseg.py's output, mmseg's pretrained files) and a
    whole segmentor's (found under backbone.), with mmseg's patch
    embedding without bias and its final norm ``ln1``."""
    ref = mmseg_vit(**kwargs)
    assert 'patch_embed.projection.bias' not in ref.state_dict()
    path = save(ref.state_dict(), tmp_path / 'mmseg.pth', prefix)
    ours = CAITViT(arch=VIT_ARCH, img_size=64, pretrained=path, **kwargs)
    ours.init_weights()
    assert_same_outputs(ref, ours.eval())


@pytest.mark.parametrize('kwargs', [
    dict(out_type='featmap', out_indices=(0, 1), final_norm=False),
    dict(out_type='featmap', out_indices=(0, 1), final_norm=True),
    dict(out_type='cls_token', final_norm=True),
])
def test_mmpretrain_vit_checkpoint_gives_its_features(kwargs, tmp_path):
    """mmpretrain's classifier checkpoint (backbone. and head.), with the
    final norm ``ln1``; the class token is what its classifier heads read."""
    ref = mmpretrain_vit(**kwargs)
    state = {f'backbone.{k}': v for k, v in ref.state_dict().items()}
    state['head.layers.head.weight'] = torch.randn(10, 64)
    path = save(state, tmp_path / 'mmpretrain.pth')
    ours = CAITViT(arch=VIT_ARCH, img_size=64, pretrained=path, **kwargs)
    ours.init_weights()
    assert_same_outputs(ref, ours.eval())


def test_mmpretrain_pooled_norm_is_dropped_like_timms_fc_norm(tmp_path):
    ref = mmpretrain_vit(out_type='avg_featmap', out_indices=(0, 1))
    assert 'ln2.weight' in ref.state_dict()
    path = save(ref.state_dict(), tmp_path / 'avg.pth')
    ours = CAITViT(arch=VIT_ARCH, img_size=64, final_norm=True,
                   out_indices=(0, 1), pretrained=path)
    ours.init_weights()
    torch.testing.assert_close(ours.norm.weight, ref.ln1.weight)


def test_mmpretrain_distilled_deit_drops_the_distillation_token(tmp_path):
    ref = mmpretrain_vit(distilled=True, out_type='featmap')
    path = save(ref.state_dict(), tmp_path / 'distilled.pth')
    ours = CAITViT(arch=VIT_ARCH, img_size=64, pretrained=path)
    ours.init_weights()
    assert ref.pos_embed.shape[1] == 2 + 16
    torch.testing.assert_close(ours.pos_embed[:, :1], ref.pos_embed[:, :1])
    torch.testing.assert_close(ours.pos_embed[:, 1:], ref.pos_embed[:, 2:])
    torch.testing.assert_close(ours.cls_token, ref.cls_token)


def test_position_embeddings_of_another_size_are_resampled(tmp_path):
    """As for timm files: a 224 classifier's grid to a 64 backbone's."""
    ref = mmpretrain_vit(img_size=224, out_type='featmap', final_norm=False)
    path = save(ref.state_dict(), tmp_path / 'in1k.pth', 'backbone.')
    ours = CAITViT(arch=VIT_ARCH, img_size=64, pretrained=path)
    ours.init_weights()
    assert ours.pos_embed.shape == (1, 1 + 16, 64)
    # resampled once at loading as mmpretrain does in every forward
    assert_same_outputs(ref, ours.eval(), sizes=[(64, 64)])


def test_layouts_are_told_from_the_keys():
    def keys(model):
        return dict.fromkeys(model.state_dict())
    assert detect_layout(keys(mmseg_vit())) == MMSEG
    assert detect_layout(keys(mmpretrain_vit())) == MMPRETRAIN
    assert detect_layout(keys(CAITViT(arch=VIT_ARCH))) == TIMM
    assert detect_layout({'backbone.layers.0.attn.qkv.weight': 0}) is None


def test_a_vit_of_another_architecture_is_refused_with_its_keys(tmp_path):
    from mmseg.models.backbones import MixVisionTransformer
    segformer = MixVisionTransformer(embed_dims=16, num_layers=[1, 1, 1, 1])
    path = save(segformer.state_dict(), tmp_path / 'segformer.pth',
                'backbone.')
    ours = CAITViT(arch=VIT_ARCH, img_size=64, pretrained=path)
    with pytest.raises(CheckpointError, match='not in a ViT layout') as err:
        ours.init_weights()
    assert 'layers.N.N.N.attn.attn.in_proj_weight' in str(err.value)
    assert str(path) in str(err.value)


def test_vit_variants_caitvit_does_not_build_are_refused_by_key(tmp_path):
    scaled = mmpretrain_vit(layer_scale_init_value=0.1)
    path = save(scaled.state_dict(), tmp_path / 'deit3.pth')
    ours = CAITViT(arch=VIT_ARCH, img_size=64, pretrained=path)
    with pytest.raises(CheckpointError, match='no place for') as err:
        ours.init_weights()
    assert 'layers.N.attn.gamma1.weight' in str(err.value)
    assert 'layers.N.ffn.gamma2.weight' in str(err.value)

    pre_ln = mmseg_vit(pre_norm=True)
    path = save(pre_ln.state_dict(), tmp_path / 'pre_ln.pth')
    with pytest.raises(CheckpointError, match=r'ln_pre\.weight'):
        CAITViT(arch=VIT_ARCH, img_size=64, pretrained=path).init_weights()


def test_a_checkpoint_of_another_size_names_the_converted_keys(tmp_path):
    path = save(mmseg_vit().state_dict(), tmp_path / 'mmseg.pth')
    narrow = CAITViT(arch=dict(VIT_ARCH, embed_dims=32), img_size=64,
                     pretrained=path)
    with pytest.raises(RuntimeError, match='shape mismatch') as err:
        narrow.init_weights()
    assert "read as mmseg's VisionTransformer" in str(err.value)
    assert 'blocks.0.attn.qkv.weight: checkpoint (192, 64)' in str(err.value)

    deep = CAITViT(arch=dict(VIT_ARCH, num_layers=3), img_size=64,
                   pretrained=path)
    with pytest.raises(RuntimeError, match=r'missing keys.*blocks\.2\.'):
        deep.init_weights()

    no_bias = save(mmseg_vit(qkv_bias=False).state_dict(),
                   tmp_path / 'no_bias.pth')
    with pytest.raises(RuntimeError, match=r'blocks\.0\.attn\.qkv\.bias'):
        CAITViT(arch=VIT_ARCH, img_size=64, pretrained=no_bias).init_weights()


def test_convert_checkpoint_refuses_another_layout():
    state = {f'backbone.{k}': v
             for k, v in mmpretrain_vit().state_dict().items()}
    converted = convert_checkpoint(state, MMPRETRAIN, 'f.pth')
    assert 'backbone.blocks.1.mlp.fc2.weight' in converted
    with pytest.raises(CheckpointError, match='mmpretrain2cait.py'):
        convert_checkpoint(state, MMSEG, 'f.pth')
    ours = {f'backbone.{k}': v
            for k, v in CAITViT(arch=VIT_ARCH).state_dict().items()}
    with pytest.raises(CheckpointError, match='nothing to convert'):
        convert_checkpoint(ours, MMSEG, 'f.pth')
