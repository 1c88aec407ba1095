"""CAITUPerHead: mmseg's UPerHead with CDCP channel groups and slim widths."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmseg.models.decode_heads import UPerHead
from torch import nn

from cait_mm.models.backbones.compressed_checkpoint import _configure_head
from cait_mm.models.decode_heads import CAITUPerHead

HEAD = dict(in_channels=[8, 8, 8, 8], in_index=[0, 1, 2, 3], channels=12,
            num_classes=5, norm_cfg=dict(type='BN'), align_corners=False,
            pool_scales=(1, 2, 3, 6))


def _maps(sizes=(8, 8, 8, 8), seed=0):
    torch.manual_seed(seed)
    return [torch.randn(2, 8, s, s) for s in sizes]


def _trained_like(head, seed=1):
    """Non-trivial norm statistics and compactors, as after training."""
    torch.manual_seed(seed)
    for m in head.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.)
            m.weight.data.normal_()
            m.bias.data.normal_()
    for groups in head.compactors.values():
        for group in groups:
            group.weight.data.add_(0.2 * torch.randn_like(group.weight))
    return head


@pytest.mark.parametrize('sizes', [(8, 8, 8, 8), (16, 8, 4, 2)])
def test_without_pruning_it_is_mmsegs_uperhead(sizes):
    torch.manual_seed(0)
    ours = CAITUPerHead(**HEAD).eval()
    theirs = UPerHead(**HEAD).eval()
    theirs.load_state_dict(ours.state_dict())
    x = _maps(sizes)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def test_summed_channels_share_a_mask_and_concatenations_keep_theirs():
    head = _trained_like(CAITUPerHead(channel_prune=dict(), **HEAD))
    lateral = head.compactors['lateral'][0]
    # the 3 lateral convs and the PPM bottleneck are one group's members
    assert lateral.weight.shape == (4, 1, 12, 12)
    for kind, ratio in dict(ppm=0.25, lateral=0.5, fpn=0.75, fuse=0.5).items():
        for group in head.compactors[kind]:
            group.select(ratio)
    seen = {}

    def keep(name):
        def hook(module, args):
            seen[name] = args[0]

        return hook

    head.fpn_convs[0].conv.register_forward_pre_hook(keep('fpn0'))
    head.fpn_bottleneck.conv.register_forward_pre_hook(keep('fuse'))
    head.bottleneck.conv.register_forward_pre_hook(keep('psp'))
    head.eval()
    with torch.no_grad():
        head(_maps())

    def zero(name):
        return seen[name].abs().amax(dim=(0, 2, 3)) == 0

    pruned = lateral.pruned[0]
    assert 0 < pruned.sum() < 12
    # the top-down sum is zero on the lateral group's pruned channels
    assert zero('fpn0')[pruned].all()
    # fpn_bottleneck's input: 3 FPN outputs, each with its own mask, and the
    # PPM bottleneck's output (lateral mask)
    masks = [g.pruned[0] for g in head.compactors['fpn']] + [pruned]
    assert zero('fuse')[torch.cat(masks)].all()
    # the PPM bottleneck's input: the backbone map, then 4 PPM outputs
    masks = [g.pruned[0] for g in head.compactors['ppm']]
    assert zero('psp')[8:][torch.cat(masks)].all()
    assert not zero('psp')[:8].any()
    # the masks differ between concatenated sources (else nothing is shown)
    assert not all(torch.equal(m, masks[0]) for m in masks)


@pytest.mark.parametrize('groups', [('ppm', 'lateral', 'fpn', 'fuse'),
                                    ('lateral', 'fuse')])
def test_compact_computes_what_the_masked_head_computes(groups):
    head = _trained_like(
        CAITUPerHead(channel_prune=dict(groups=groups), **HEAD))
    ratios = dict(ppm=0.25, lateral=0.5, fpn=0.75, fuse=0.5)
    for kind in groups:
        for group in head.compactors[kind]:
            group.select(ratios[kind])
    head.eval()
    x = _maps((8, 8, 4, 4))
    with torch.no_grad():
        masked = head(x)
        params = sum(p.numel() for p in head.parameters())
        head.compact()
        compact = head(x)
    widths = {k: [12 - int(ratios[k] * 12) if k in groups else 12] * n
              for k, n in dict(ppm=4, lateral=1, fpn=3, fuse=1).items()}
    assert head.channel_widths == widths
    assert len(head.compactors) == 0 and not head.channel_groups()
    assert sum(p.numel() for p in head.parameters()) < params
    assert (compact - masked).abs().max() < 1e-4
    # the widths rebuild the slim head, which loads the compact weights
    rebuilt = CAITUPerHead(channel_widths=widths, **HEAD).eval()
    rebuilt.load_state_dict(head.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), compact)


def test_widths_accept_ints_lists_and_ratios_and_refuse_the_rest():
    head = CAITUPerHead(
        channel_widths=dict(ppm=[3, 4, 5, 6], lateral=7, fpn=0.5), **HEAD)
    assert head.channel_widths == dict(
        ppm=[3, 4, 5, 6], lateral=[7], fpn=[6, 6, 6], fuse=[12])
    assert head.bottleneck.conv.in_channels == 8 + 3 + 4 + 5 + 6
    assert head.fpn_bottleneck.conv.in_channels == 6 * 3 + 7
    with torch.no_grad():
        assert head.eval()(_maps()).shape == (2, 5, 8, 8)
    with pytest.raises(ValueError, match=r"channel_widths\['fpn'\] must be"):
        CAITUPerHead(channel_widths=dict(fpn=[6, 6]), **HEAD)
    with pytest.raises(ValueError, match='takes a dict with keys'):
        CAITUPerHead(channel_widths=dict(neck=4), **HEAD)
    with pytest.raises(ValueError, match='unknown channel groups'):
        CAITUPerHead(channel_prune=dict(groups=('qk', )), **HEAD)
    with pytest.raises(ValueError, match='ratios and schedule belong'):
        CAITUPerHead(channel_prune=dict(ratio=0.5), **HEAD)


def test_a_pruned_head_needs_a_prunable_head_type():
    widths = dict(ppm=[6] * 4, lateral=[6], fpn=[6] * 3, fuse=[6])
    model = ConfigDict(decode_head=dict(type='cait_mm.CAITUPerHead'))
    _configure_head(model, 'decode_head', widths, 'x.pth')
    assert model.decode_head.channel_widths == widths
    with pytest.raises(ValueError, match='channel-pruned decode_head'):
        _configure_head(
            ConfigDict(decode_head=dict(type='UPerHead')), 'decode_head',
            widths, 'x.pth')


def test_only_pruned_heads_go_into_an_export(tmp_path):
    """A dense head is left out of the file's metadata, so the export loads
    into configs with mmseg's own UPerHead too."""
    from cait_mm.models import CAITViT
    from cait_mm.models.backbones import export_compressed

    class Segmentor(nn.Module):
        def __init__(self, head):
            super().__init__()
            self.backbone = CAITViT(
                arch=dict(embed_dims=8, num_layers=2, num_heads=2,
                          mlp_ratio=2.), img_size=32, out_indices=(0, 1))
            self.decode_head = head

    dense = CAITUPerHead(**HEAD)
    assert not dense.is_pruned
    info = export_compressed(Segmentor(dense), str(tmp_path / 'a.pth'))
    assert 'heads' not in info
    slim = CAITUPerHead(channel_widths=dict(fuse=6), **HEAD)
    assert slim.is_pruned
    info = export_compressed(Segmentor(slim), str(tmp_path / 'b.pth'))
    assert info['heads']['decode_head']['channel_widths']['fuse'] == [6]
