"""CAITViT with CDCP compactors, export, and rebuild from a compressed file."""
import pytest
import torch
from torch import nn

from cait_mm.models import CAITViT
from cait_mm.models.backbones import (CompressedCheckpoint, compression_meta,
                                      export_compressed)

TINY = dict(embed_dims=32, num_layers=4, num_heads=2, mlp_ratio=2.)
MERGE = dict(type='ATME', schedule=[(1, 'h', 0.5), (2, 'v', 0.5)])


class _Segmentor(nn.Module):
    """What the exporter sees in a real model: a backbone and a head."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(32, 3, 1)


def _pruned_backbone(**kwargs):
    torch.manual_seed(0)
    model = CAITViT(
        arch=TINY, img_size=64, out_indices=(1, 3),
        channel_prune=dict(groups=('qk', 'v', 'mlp')), **kwargs)
    model.init_weights()
    with torch.no_grad():
        for entries in model.channel_groups().values():
            for _, group in entries:
                group.weight.add_(0.2 * torch.randn_like(group.weight))
                group.select(0.5)
    return model.eval()


def test_channel_prune_adds_groups_to_every_block():
    model = _pruned_backbone()
    groups = model.channel_groups()
    assert sorted(groups) == ['mlp', 'qk', 'v']
    assert [i for i, _ in groups['qk']] == [0, 1, 2, 3]
    assert groups['qk'][0][1].weight.shape == (2, 2, 16, 16)
    assert groups['mlp'][0][1].weight.shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match='unknown keys'):
        CAITViT(arch=TINY, channel_prune=dict(ratio=0.5))
    with pytest.raises(ValueError, match='distinct names'):
        CAITViT(arch=TINY, channel_prune=dict(groups=('qk', 'heads')))


def test_a_dense_checkpoint_initialises_a_model_with_compactors(tmp_path):
    dense = CAITViT(arch=TINY, img_size=64)
    dense.init_weights()
    path = tmp_path / 'dense.pth'
    torch.save(dense.state_dict(), path)
    model = CAITViT(arch=TINY, img_size=64, pretrained=str(path),
                    channel_prune=dict(groups=('qk', 'mlp')))
    model.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), dense.eval()(x), rtol=0,
                                   atol=1e-5)


def test_export_and_rebuild_from_the_file_alone(tmp_path):
    model = _Segmentor(_pruned_backbone(token_reducer=MERGE)).eval()
    x = torch.randn(2, 3, 80, 64)
    with torch.no_grad():
        masked = model.backbone(x)
    path = str(tmp_path / 'compressed.pth')
    info = export_compressed(model, path)
    assert info['format'] == 2 and info['prefix'] == 'backbone.'
    assert info['pos_grid'] == [4, 4]
    spec = info['spec']
    assert spec['arch'] == TINY
    assert spec['channel_widths'][0] == dict(qk_dim=8, v_dim=8, mlp_hidden=32)
    assert spec['token_reducer'] == dict(
        type='ATME', schedule=[[1, 'h', 0.5], [2, 'v', 0.5]],
        granularity='token')

    # tensors and plain types only
    checkpoint = torch.load(path, weights_only=True)
    assert 'head.weight' in checkpoint['state_dict']
    assert not any('compactor' in k for k in checkpoint['state_dict'])
    assert compression_meta(checkpoint, path).to_dict() == info
    assert CompressedCheckpoint.read(path).meta.to_dict() == info

    # the file alone decides the architecture: no arch in the config
    rebuilt = CAITViT(img_size=64, out_indices=(1, 3), compressed=path)
    assert rebuilt.arch_settings == TINY
    assert rebuilt.channel_widths == spec['channel_widths']
    assert rebuilt.token_reducer.config() == spec['token_reducer']
    assert rebuilt.compression_spec().to_dict() == spec
    rebuilt.init_weights()
    with torch.no_grad():
        for a, b in zip(rebuilt.eval()(x), masked):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)

    # the config's token reduction wins over the file's
    override = CAITViT(arch=TINY, img_size=64, compressed=path,
                       token_reducer=dict(type='TPS', blocks=(2, )))
    assert override.token_reducer.config()['type'] == 'TPS'
    assert override.token_reducer.blocks == {2}


def test_a_pruned_checkpoint_does_not_load_into_a_dense_architecture(
        tmp_path):
    path = str(tmp_path / 'compressed.pth')
    export_compressed(_Segmentor(_pruned_backbone()), path)
    dense = CAITViT(arch=TINY, img_size=64,
                    init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(RuntimeError,
                       match='is channel-pruned.*compressed='):
        dense.init_weights()
    # exactly the settings that conflict with the file are named
    with pytest.raises(ValueError, match='does not fit') as error:
        CAITViT(arch='deit-t', compressed=path)
    assert 'arch: config' in str(error.value)
    assert 'channel_widths' not in str(error.value)
    widths = [dict(qk_dim=16, v_dim=16, mlp_hidden=64)] * 4
    with pytest.raises(ValueError, match='does not fit') as error:
        CAITViT(arch=TINY, compressed=path, channel_widths=widths,
                qkv_bias=False, patch_size=16)
    message = str(error.value)
    assert 'channel_widths: config' in message
    assert 'qkv_bias: config False, checkpoint True' in message
    assert 'arch' not in message and 'patch_size' not in message
    with pytest.raises(ValueError, match='not several'):
        CAITViT(arch=TINY, compressed=path, pretrained=path)


def test_a_dense_file_is_not_a_compressed_checkpoint(tmp_path):
    path = tmp_path / 'dense.pth'
    torch.save(CAITViT(arch=TINY).state_dict(), path)
    with pytest.raises(ValueError, match='no cait_mm compression metadata'):
        CAITViT(arch=TINY, compressed=str(path))


def test_channel_widths_from_pruning_ratios():
    model = CAITViT(arch='deit-s', channel_widths=dict(qk=0.5, v=0.25,
                                                       mlp=0.5))
    assert model.channel_widths == [
        dict(qk_dim=32, v_dim=48, mlp_hidden=768)
    ] * 12
    assert model.blocks[0].attn.qkv.out_features == 6 * (32 + 32 + 48)
    with pytest.raises(ValueError, match='would leave no qk channel'):
        CAITViT(arch='deit-s', channel_widths=dict(qk=1.0))
    with pytest.raises(ValueError, match='takes the keys'):
        CAITViT(arch='deit-s', channel_widths=dict(heads=0.5))


def test_channel_widths_are_checked():
    with pytest.raises(ValueError, match='3 entries for 4 blocks'):
        CAITViT(arch=TINY, channel_widths=[{}] * 3)
    bad = [dict(qk_dim=8, v_dim=8, mlp_hidden=32)] * 3 + [
        dict(qk_dim=17, v_dim=8, mlp_hidden=32)
    ]
    with pytest.raises(ValueError, match=r'channel_widths\[3\]'):
        CAITViT(arch=TINY, channel_widths=bad)
    with pytest.raises(RuntimeError, match='call compact'):
        _pruned_backbone().compression_spec()


def test_malformed_or_broken_compressed_files_are_named(tmp_path):
    path = str(tmp_path / 'compressed.pth')
    export_compressed(_Segmentor(_pruned_backbone()), path)
    checkpoint = torch.load(path, weights_only=True)
    meta = checkpoint['meta']['cait_mm']
    del meta['spec']['channel_widths']
    broken = str(tmp_path / 'no_widths.pth')
    torch.save(checkpoint, broken)
    with pytest.raises(ValueError, match=r"no_widths.pth.*missing keys "
                       r"\['channel_widths'\]"):
        CAITViT(compressed=broken)
    del meta['spec']
    torch.save(checkpoint, broken)
    with pytest.raises(ValueError, match=r"malformed cait_mm metadata, "
                       r"missing \['spec'\]"):
        CAITViT(compressed=broken)
    meta['format'] = 7
    torch.save(checkpoint, broken)
    with pytest.raises(ValueError, match=r'format 7; this version reads '
                       r'formats \(2,\)'):
        CAITViT(compressed=broken)
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(ValueError, match='empty.pth" is empty'):
        CAITViT(compressed=str(empty))
