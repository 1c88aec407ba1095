"""mmseg's UPerHead with CDCP channel groups and slim widths."""
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads import UPerHead
from mmseg.models.utils import resize
from torch import Tensor

from cait_mm.registry import MODELS
from ..channel_prunable import ChannelPrunable, Source, Widths

#: The channel-group families of the head, in the order of its forward.
HEAD_GROUPS = ('ppm', 'lateral', 'fpn', 'fuse')


@MODELS.register_module()
class CAITUPerHead(ChannelPrunable, UPerHead):
    """``UPerHead`` whose convolutions can be channel-pruned (CDCP) and
    built at pruned widths.

    Without ``channel_prune`` and ``channel_widths`` it is mmseg's UPerHead
    (same parameters and outputs), except that it does not resize maps that
    already have the target size (an exact copy). Every cait_mm UperNet
    config uses it.

    Channel groups (each conv's output channels; a group's compactor sits
    between the conv's norm and its activation, see
    :mod:`cait_mm.core.conv_groups`):

    - ``ppm``: one group per pooling scale of the PPM;
    - ``lateral``: one group for the lateral convs and the PPM bottleneck,
      whose outputs are summed along the top-down path, so they share one
      mask (the group's members);
    - ``fpn``: one group per FPN conv;
    - ``fuse``: ``fpn_bottleneck``, the input of ``conv_seg``.

    Concatenated sources (the PPM outputs into the bottleneck, the FPN
    outputs into ``fpn_bottleneck``) keep their own masks; they map to the
    next conv's input columns, so the pruned head is a UPerHead with
    narrower convs.

    Args:
        channel_prune (dict, optional): ``dict(groups=('ppm', 'lateral',
            'fpn', 'fuse'))``: identity-initialised compactors for those
            groups, pruned by ``cait_mm.CDCPHook`` (ratios under the same
            names); masked in eval mode, removed by
            ``tools/deployment/export_compressed.py``.
        channel_widths (dict, optional): The output channels of each
            family, ``dict(ppm=, lateral=, fpn=, fuse=)``: an int for every
            conv of the family, a list with one int per conv, or a float in
            ``[0, 1)``, the fraction of ``channels`` pruned (rounded as
            ``CDCPHook`` does). Usually read from an exported checkpoint.
        **kwargs: ``UPerHead``'s arguments.
    """

    FAMILIES = HEAD_GROUPS

    def __init__(self,
                 pool_scales=(1, 2, 3, 6),
                 channel_prune: Optional[Dict] = None,
                 channel_widths: Optional[Dict[str, Widths]] = None,
                 **kwargs):
        super().__init__(pool_scales=pool_scales, **kwargs)
        self._init_pruning(channel_prune, channel_widths, self.channels)

    def _placement(self) -> Iterator[Tuple[str, int, int, ConvModule]]:
        for i, stage in enumerate(self.psp_modules):
            yield 'ppm', i, 0, stage[1]
        for i, conv in enumerate(self.lateral_convs):
            yield 'lateral', 0, i, conv
        yield 'lateral', 0, len(self.lateral_convs), self.bottleneck
        for i, conv in enumerate(self.fpn_convs):
            yield 'fpn', i, 0, conv
        yield 'fuse', 0, 0, self.fpn_bottleneck

    def _sources(self, family: str, index: int,
                 member: int) -> List[Source]:
        if family == 'ppm':
            return [self.in_channels[-1]]
        if family == 'lateral':
            if member < len(self.lateral_convs):
                return [self.in_channels[member]]
            return [self.in_channels[-1]] + [('ppm', i) for i in range(
                len(self.psp_modules))]
        if family == 'fpn':
            return [('lateral', 0)]
        return [('fpn', i) for i in range(len(self.fpn_convs))] + [
            ('lateral', 0)]

    def _tails(self):
        yield 'conv_seg', self.conv_seg, [('fuse', 0)]

    def _set_layer(self, family: str, index: int, member: int,
                   conv: ConvModule) -> None:
        if family == 'ppm':
            self.psp_modules[index][1] = conv
        elif family == 'lateral' and member < len(self.lateral_convs):
            self.lateral_convs[member] = conv
        elif family == 'lateral':
            self.bottleneck = conv
        elif family == 'fpn':
            self.fpn_convs[index] = conv
        else:
            self.fpn_bottleneck = conv

    # --------------------------------------------------------- forward
    def _resize(self, x: Tensor, size) -> Tensor:
        if x.shape[2:] == size:
            return x  # bilinear resizing to the same size copies
        return resize(
            x, size=size, mode='bilinear', align_corners=self.align_corners)

    def psp_forward(self, inputs: List[Tensor]) -> Tensor:
        x = inputs[-1]
        outs = [x]
        for i, stage in enumerate(self.psp_modules):
            pooled = stage[0](x)
            outs.append(
                self._resize(
                    self._conv('ppm', i, 0, stage[1], pooled), x.shape[2:]))
        return self._conv('lateral', 0, len(self.lateral_convs),
                          self.bottleneck, torch.cat(outs, dim=1))

    def _forward_feature(self, inputs: List[Tensor]) -> Tensor:
        """``(B, fuse width, H, W)`` features at the first map's size."""
        inputs = self._transform_inputs(inputs)
        laterals = [
            self._conv('lateral', 0, i, conv, inputs[i])
            for i, conv in enumerate(self.lateral_convs)
        ]
        laterals.append(self.psp_forward(inputs))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + self._resize(
                laterals[i], laterals[i - 1].shape[2:])
        outs = [
            self._conv('fpn', i, 0, conv, laterals[i])
            for i, conv in enumerate(self.fpn_convs)
        ]
        outs.append(laterals[-1])
        size = outs[0].shape[2:]
        outs = [outs[0]] + [self._resize(x, size) for x in outs[1:]]
        return self._conv('fuse', 0, 0, self.fpn_bottleneck,
                          torch.cat(outs, dim=1))
