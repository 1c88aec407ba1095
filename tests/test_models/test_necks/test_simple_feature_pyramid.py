import math

import pytest
import torch
from torch import nn

from cait_mm.models import LayerNorm2d, SimpleFeaturePyramid
from cait_mm.registry import MODELS


def _neck(**kwargs):
    kwargs.setdefault('in_channels', 32)
    kwargs.setdefault('out_channels', 16)
    neck = SimpleFeaturePyramid(**kwargs)
    neck.init_weights()
    return neck.eval()


@pytest.mark.parametrize('grid', [(4, 4), (14, 14), (5, 7), (3, 9), (1, 1),
                                  (50, 84), (13, 6)])
def test_output_shapes(grid):
    neck = _neck()
    h, w = grid
    with torch.no_grad():
        outs = neck((torch.randn(2, 32, h, w), ))
    expected = [(4 * h, 4 * w), (2 * h, 2 * w), (h, w),
                (math.ceil(h / 2), math.ceil(w / 2)),
                (math.ceil(h / 4), math.ceil(w / 4))]
    assert [tuple(o.shape) for o in outs] == [(2, 16, *s) for s in expected]


def test_scale_factors_and_extra_levels():
    neck = _neck(scale_factors=(2.0, 1.0), num_outs=4)
    with torch.no_grad():
        outs = neck([torch.randn(1, 8, 5, 5), torch.randn(1, 32, 6, 10)])
    # the last backbone output is used
    assert [tuple(o.shape[-2:]) for o in outs] == [(12, 20), (6, 10), (3, 5),
                                                   (2, 3)]
    with pytest.raises(ValueError, match='decreasing order'):
        SimpleFeaturePyramid(32, scale_factors=(1.0, 2.0))
    with pytest.raises(ValueError, match='decreasing order'):
        SimpleFeaturePyramid(32, scale_factors=(3.0, ))
    with pytest.raises(ValueError, match='fewer than'):
        SimpleFeaturePyramid(32, num_outs=3)


def test_builds_from_registry_with_layer_norm_2d():
    neck = MODELS.build(
        dict(
            type='cait_mm.SimpleFeaturePyramid',
            in_channels=32,
            out_channels=16))
    norms = [m for m in neck.modules() if isinstance(m, nn.LayerNorm)]
    # one inside the 4x upsampling, one per 1x1 and 3x3 conv of 4 levels
    assert len(norms) == 1 + 8
    assert all(isinstance(m, LayerNorm2d) for m in norms)


def test_layer_norm_2d_normalises_channels():
    norm = LayerNorm2d(8, eps=1e-6)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(2, 8, 5, 7)
    expected = nn.functional.layer_norm(
        x.permute(0, 2, 3, 1), (8, ), norm.weight, norm.bias,
        1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)


def _pad_to(x, shape):
    out = x.new_zeros(*x.shape[:-2], *shape)
    out[..., :x.shape[-2], :x.shape[-1]] = x
    return out


# (content size in pixels, the image's own padded size): content grids of
# 16-pixel patches with odd sizes, partly padded last patches, and images
# that fill their own input exactly.
IMAGES = [((72, 44), (96, 64)), ((40, 70), (64, 96)), ((64, 96), (64, 96)),
          ((33, 50), (48, 64))]


def test_padded_batch_gives_each_image_its_own_pyramid():
    torch.manual_seed(0)
    neck = _neck()
    # make the LayerNorm biases non-zero, so padding would not stay zero by
    # accident
    for m in neck.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.normal_(m.bias)
    maps, sizes = [], []
    for (h, w), (ph, pw) in IMAGES:
        # a backbone map: content on the image's patch grid, zero elsewhere
        grid = (math.ceil(h / 16), math.ceil(w / 16))
        maps.append(_pad_to(torch.randn(32, *grid), (ph // 16, pw // 16)))
        sizes.append((h, w))
    batch = torch.stack([_pad_to(m, (7, 6)) for m in maps])
    with torch.no_grad():
        batched = neck([batch], valid_sizes=sizes)
        for i, (one, size) in enumerate(zip(maps, sizes)):
            alone = neck([one[None]], valid_sizes=[size])
            for level, (b, a) in enumerate(zip(batched, alone)):
                h, w = a.shape[-2:]
                torch.testing.assert_close(
                    b[i:i + 1, :, :h, :w],
                    a,
                    rtol=1e-5,
                    atol=1e-5,
                    msg=f'image {i}, level {level}')
                assert b[i, :, h:].abs().sum() == 0
                assert b[i, :, :, w:].abs().sum() == 0
            # content that fills its own input needs no sizes at all
            if maps[i].shape[-2:] == (math.ceil(size[0] / 16),
                                      math.ceil(size[1] / 16)):
                for a, u in zip(alone, neck([one[None]])):
                    torch.testing.assert_close(a, u, rtol=0, atol=0)
        # without sizes the padding leaks into the content
        plain = neck([batch])
        assert not torch.allclose(
            plain[0][1, :, :12, :20], batched[0][1, :, :12, :20], atol=1e-3)
    with pytest.raises(ValueError, match='exceed the input map'):
        neck([batch], valid_sizes=[(113, 96)] * 4)


def test_pruned_inner_channels_export_like_the_masked_neck():
    """CDCP on each level's inner channels: the layer norm after the 1x1
    conv normalises over the kept channels, so the compact neck (a layer
    norm over fewer channels) computes what the masked one does, padded
    batches included."""
    from cait_mm.core.conv_groups import masked_channel_norm
    torch.manual_seed(0)
    neck = SimpleFeaturePyramid(32, 24, channel_prune=dict()).eval()
    for m in neck.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.data.normal_()
            m.bias.data.normal_()
    for i, group in enumerate(neck.compactors['neck']):
        group.weight.data.add_(0.2 * torch.randn_like(group.weight))
        group.select([0.25, 0.5, 0.5, 0.75][i])
    x = torch.randn(2, 32, 6, 10)
    sizes = [(96, 160), (64, 100)]
    with torch.no_grad():
        masked = neck(x, valid_sizes=sizes)
        neck.compact()
        compact = neck(x, valid_sizes=sizes)
    assert neck.channel_widths == dict(neck=[18, 12, 12, 6])
    assert neck.fpn_convs[3].conv.in_channels == 6
    assert neck.lateral_convs[0].norm.normalized_shape == (18, )
    for a, b in zip(compact, masked):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-4
    rebuilt = SimpleFeaturePyramid(
        32, 24, channel_widths=dict(neck=[18, 12, 12, 6])).eval()
    rebuilt.load_state_dict(neck.state_dict())
    with torch.no_grad():
        for a, b in zip(rebuilt(x, valid_sizes=sizes), compact):
            assert torch.equal(a, b)
    # the masked norm is a layer norm over the kept channels
    keep = torch.arange(24) % 3 != 0
    y = torch.randn(2, 24, 3, 5)
    w, b = torch.randn(24), torch.randn(24)
    expected = LayerNorm2d(16, eps=1e-6)
    expected.weight.data, expected.bias.data = w[keep], b[keep]
    got = masked_channel_norm(y, keep, w, b, 1e-6)
    torch.testing.assert_close(got[:, keep], expected(y[:, keep]))
    assert got[:, ~keep].abs().max() == 0
