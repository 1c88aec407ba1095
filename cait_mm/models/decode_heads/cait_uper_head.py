"""mmseg's UPerHead with CDCP channel groups and slim widths."""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads import UPerHead
from mmseg.models.utils import resize
from torch import Tensor, nn

from cait_mm.core import ChannelGroup
from cait_mm.core.compactor import num_to_prune
from cait_mm.core.conv_groups import (apply_compactor, fold_conv,
                                      input_columns, kept_channels)
from cait_mm.registry import MODELS

#: The channel-group families of the head, in the order of its forward.
HEAD_GROUPS = ('ppm', 'lateral', 'fpn', 'fuse')
Widths = Union[int, float, Sequence[int]]


@MODELS.register_module()
class CAITUPerHead(UPerHead):
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
            ``tools/export_compressed.py``.
        channel_widths (dict, optional): The output channels of each
            family, ``dict(ppm=, lateral=, fpn=, fuse=)``: an int for every
            conv of the family, a list with one int per conv, or a float in
            ``[0, 1)``, the fraction of ``channels`` pruned (rounded as
            ``CDCPHook`` does). Usually read from an exported checkpoint.
        **kwargs: ``UPerHead``'s arguments.
    """

    def __init__(self,
                 pool_scales=(1, 2, 3, 6),
                 channel_prune: Optional[Dict] = None,
                 channel_widths: Optional[Dict[str, Widths]] = None,
                 **kwargs):
        super().__init__(pool_scales=pool_scales, **kwargs)
        for kind, _, _, conv in self._placement():
            if conv.order != ('conv', 'norm', 'act'):
                raise ValueError(f'CAITUPerHead: {kind} convs must run conv,'
                                 f' norm, act; got order {conv.order}')
        if channel_widths is not None:
            self._rebuild(self._parse_widths(channel_widths))
        kinds = _parse_groups(channel_prune)
        widths = self.channel_widths
        self.compactors = nn.ModuleDict({
            kind: nn.ModuleList(
                ChannelGroup(kind, self._members(kind), 1, width)
                for width in widths[kind])
            for kind in kinds
        })

    # ------------------------------------------------------- structure
    def _placement(self) -> Iterator[Tuple[str, int, int, ConvModule]]:
        """``(family, group index, member, conv)`` for every grouped conv:
        the one place that says which channels are pruned together."""
        for i, stage in enumerate(self.psp_modules):
            yield 'ppm', i, 0, stage[1]
        for i, conv in enumerate(self.lateral_convs):
            yield 'lateral', 0, i, conv
        yield 'lateral', 0, len(self.lateral_convs), self.bottleneck
        for i, conv in enumerate(self.fpn_convs):
            yield 'fpn', i, 0, conv
        yield 'fuse', 0, 0, self.fpn_bottleneck

    def _members(self, kind: str) -> int:
        return len(self.in_channels) if kind == 'lateral' else 1

    def _sources(self, kind: str, member: int) -> List[Union[int, Tuple]]:
        """What a conv's input concatenates: backbone maps (their channel
        count) and grouped outputs ``(family, index)``."""
        if kind == 'ppm':
            return [self.in_channels[-1]]
        if kind == 'lateral':
            if member < len(self.lateral_convs):
                return [self.in_channels[member]]
            return [self.in_channels[-1]] + [('ppm', i) for i in range(
                len(self.psp_modules))]
        if kind == 'fpn':
            return [('lateral', 0)]
        if kind == 'fuse':
            return [('fpn', i) for i in range(len(self.fpn_convs))] + [
                ('lateral', 0)]
        if kind == 'seg':  # conv_seg
            return [('fuse', 0)]
        raise KeyError(kind)

    @property
    def channel_widths(self) -> Dict[str, List[int]]:
        """The output channels of every conv by family (what an export
        writes to rebuild this head)."""
        widths = {kind: [] for kind in HEAD_GROUPS}
        for kind, index, member, conv in self._placement():
            if member == 0:
                widths[kind].append(conv.conv.out_channels)
        return widths

    def _parse_widths(self, channel_widths: Dict) -> Dict[str, List[int]]:
        if not isinstance(channel_widths, dict) or \
                set(channel_widths) - set(HEAD_GROUPS):
            raise ValueError(
                f'CAITUPerHead: channel_widths takes a dict with keys '
                f'{HEAD_GROUPS}, got {channel_widths!r}')
        widths = self.channel_widths
        for kind, value in channel_widths.items():
            count = len(widths[kind])
            if isinstance(value, float):
                value = self.channels - num_to_prune(value, self.channels,
                                                     kind)
            values = [value] * count if isinstance(value, int) else list(
                value)
            if len(values) != count or not all(
                    isinstance(v, int) and v > 0 for v in values):
                raise ValueError(
                    f'CAITUPerHead: channel_widths[{kind!r}] must be a '
                    f'positive int, a list of {count} of them or a pruning '
                    f'ratio, got {value!r}')
            widths[kind] = values
        return widths

    def _width(self, source, widths: Dict[str, List[int]]) -> int:
        return source if isinstance(source, int) else widths[source[0]][
            source[1]]

    def _rebuild(self, widths: Dict[str, List[int]]) -> None:
        """Replace every grouped conv and ``conv_seg`` by one of
        ``widths`` (fresh weights)."""
        for kind, index, member, conv in list(self._placement()):
            inputs = sum(
                self._width(s, widths) for s in self._sources(kind, member))
            self._replace(kind, index, member,
                          _resized(conv, inputs, widths[kind][index]))
        self.conv_seg = nn.Conv2d(widths['fuse'][0], self.out_channels, 1)

    def _replace(self, kind: str, index: int, member: int,
                 conv: ConvModule) -> None:
        if kind == 'ppm':
            self.psp_modules[index][1] = conv
        elif kind == 'lateral' and member < len(self.lateral_convs):
            self.lateral_convs[member] = conv
        elif kind == 'lateral':
            self.bottleneck = conv
        elif kind == 'fpn':
            self.fpn_convs[index] = conv
        else:
            self.fpn_bottleneck = conv

    # ------------------------------------------------------------ CDCP
    def channel_groups(self) -> Dict[str, List[Tuple[int, ChannelGroup]]]:
        """The head's CDCP groups by family, as ``(index, group)``."""
        return {
            kind: list(enumerate(groups))
            for kind, groups in self.compactors.items()
        }

    def _group(self, kind: str, index: int) -> Optional[ChannelGroup]:
        groups = self.compactors[kind] if kind in self.compactors else None
        return None if groups is None else groups[index]

    @torch.no_grad()
    def compact(self) -> 'CAITUPerHead':
        """Fold every compactor into its conv and norm and remove the
        pruned channels (outputs, and the matching input columns of every
        consumer), in place. The result has no compactors, computes what
        the masked head computes in eval mode, and is in eval mode."""
        widths = self.channel_widths
        kept = {}
        for kind in HEAD_GROUPS:
            for i, width in enumerate(widths[kind]):
                group = self._group(kind, i)
                kept[(kind, i)] = kept_channels(
                    None if group is None else group.pruned[0], width)

        def columns(sources):
            return input_columns(
                [torch.arange(s) if isinstance(s, int) else kept[s]
                 for s in sources], [self._width(s, widths) for s in sources])

        for kind, index, member, conv in list(self._placement()):
            group = self._group(kind, index)
            compactor = None if group is None else group.compactors(
                masked=True)[member, 0]
            norm = conv.norm if conv.with_norm else None
            weight, bias = fold_conv(
                conv.conv.weight, conv.conv.bias,
                None if norm is None else (norm.running_mean,
                                           norm.running_var, norm.weight,
                                           norm.bias, norm.eps), compactor)
            rows = kept[(kind, index)].to(weight.device)
            cols = columns(self._sources(kind, member)).to(weight.device)
            new = _resized(conv, len(cols), len(rows))
            new.conv.weight.copy_(weight[rows][:, cols])
            _set_bias(new, bias[rows])
            self._replace(kind, index, member, new.to(weight.device))
        cols = columns(self._sources('seg', 0)).to(
            self.conv_seg.weight.device)
        seg = nn.Conv2d(len(cols), self.out_channels, 1).to(
            self.conv_seg.weight.device)
        seg.weight.copy_(self.conv_seg.weight[:, cols])
        seg.bias.copy_(self.conv_seg.bias)
        self.conv_seg = seg
        self.compactors = nn.ModuleDict()
        return self.eval()

    # --------------------------------------------------------- forward
    def _conv(self, kind: str, index: int, member: int, conv: ConvModule,
              x: Tensor) -> Tensor:
        group = self._group(kind, index)
        if group is None:
            return conv(x)
        x = conv.conv(x)
        if conv.with_norm:
            x = conv.norm(x)
        x = apply_compactor(
            x, group.compactors(masked=not self.training)[member, 0])
        return conv.activate(x) if conv.with_activation else x

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


def _parse_groups(channel_prune: Optional[Dict]) -> Tuple[str, ...]:
    if channel_prune is None:
        return ()
    if not isinstance(channel_prune, dict) or set(channel_prune) - {'groups'}:
        raise ValueError(
            f'CAITUPerHead: channel_prune takes dict(groups={HEAD_GROUPS}) '
            f'(the ratios and schedule belong to CDCPHook), got '
            f'{channel_prune!r}')
    groups = tuple(channel_prune.get('groups', HEAD_GROUPS))
    unknown = sorted(set(groups) - set(HEAD_GROUPS))
    if unknown:
        raise ValueError(f'CAITUPerHead: unknown channel groups {unknown}; '
                         f'the head has {HEAD_GROUPS}')
    return tuple(kind for kind in HEAD_GROUPS if kind in groups)


def _resized(conv: ConvModule, inputs: int, outputs: int) -> ConvModule:
    """A ConvModule like ``conv`` with ``inputs`` and ``outputs``
    channels."""
    layer = conv.conv
    return ConvModule(
        inputs,
        outputs,
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        bias=layer.bias is not None,
        conv_cfg=conv.conv_cfg,
        norm_cfg=conv.norm_cfg,
        act_cfg=conv.act_cfg,
        inplace=conv.inplace,
        order=conv.order)


def _set_bias(conv: ConvModule, bias: Tensor) -> None:
    """Give a freshly built ``conv`` the folded ``bias``: in the conv, or,
    with a norm, as the shift of an identity norm (running mean 0, variance
    1, scale ``sqrt(1 + eps)``), so the slim head keeps UPerHead's
    layers."""
    if not conv.with_norm:
        conv.conv.bias.copy_(bias)
        return
    if conv.conv.bias is not None:
        conv.conv.bias.zero_()
    norm = conv.norm
    norm.running_mean.zero_()
    norm.running_var.fill_(1.)
    norm.weight.fill_((1. + norm.eps)**0.5)
    norm.bias.copy_(bias)
