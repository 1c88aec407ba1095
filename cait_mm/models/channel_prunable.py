"""CDCP channel groups for OpenMMLab heads and necks built from convs and
linear layers (docs/guides/cdcp.md, "Beyond the backbone: heads and
necks").

A head that mixes in :class:`ChannelPrunable` declares, in one place each:

- :meth:`~ChannelPrunable._placement`: its grouped layers as ``(family,
  index, member, layer)``: the output channels of a layer are pruned by
  the compactor of group ``index`` of ``family``; layers whose outputs are
  summed are members of one group (one mask);
- :meth:`~ChannelPrunable._sources`: what each grouped layer's input
  concatenates: an unpruned input (its channel count) or a group's
  outputs ``(family, index)``;
- :meth:`~ChannelPrunable._tails`: the layers after the groups whose inputs
  only lose columns (classifiers, regressors);
- :meth:`~ChannelPrunable._set_layer`: how to put a layer back.

Its forward applies :meth:`~ChannelPrunable._compactor` to each grouped
layer's output before the activation (:meth:`~ChannelPrunable._conv` does
it for a ConvModule: after a batch norm, before a channel-wise layer norm,
whose statistics then leave the pruned channels out). The mixin gives the
rest: the
groups for ``CDCPHook``, slim widths (``channel_widths``), and
:meth:`~ChannelPrunable.compact`, which folds every compactor into its layer
(through an eval-mode batch norm; a layer norm keeps its kept channels'
parameters) and drops pruned rows and columns.
"""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from mmcv.cnn import ConvModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from cait_mm.core import ChannelGroup
from cait_mm.core.compactor import num_to_prune
from cait_mm.core.conv_groups import (apply_compactor, fold_conv,
                                      input_columns, kept_channels,
                                      masked_channel_norm)

Source = Union[int, Tuple[str, int]]
Widths = Union[int, float, Sequence[int]]


class ChannelPrunable:
    """Mixin for an ``nn.Module`` head with CDCP channel groups.

    The class sets :attr:`FAMILIES`; ``__init__`` builds the head as usual,
    then calls :meth:`_init_pruning`.
    """
    #: The head's group families, in forward order.
    FAMILIES: Tuple[str, ...] = ()

    # ------------------------------------------ declared by each head
    def _placement(self) -> Iterator[Tuple[str, int, int, nn.Module]]:
        raise NotImplementedError

    def _sources(self, family: str, index: int,
                 member: int) -> List[Source]:
        raise NotImplementedError

    def _tails(self) -> Iterator[Tuple[str, nn.Module, List[Source]]]:
        """``(path, layer, sources)`` of the layers after the groups (their
        outputs are never pruned); ``path`` is the layer's dotted name in
        the head."""
        raise NotImplementedError

    def _set_layer(self, family: str, index: int, member: int,
                   layer: nn.Module) -> None:
        raise NotImplementedError

    # ------------------------------------------------------ set-up
    def _init_pruning(self, channel_prune: Optional[Dict],
                      channel_widths: Optional[Dict[str, Widths]],
                      dense_width: int) -> None:
        """Rebuild at ``channel_widths`` and add compactors for the groups
        ``channel_prune`` names; ``dense_width`` is what a ratio in
        ``channel_widths`` is a fraction of."""
        name = type(self).__name__
        for family, _, _, layer in self._placement():
            if not isinstance(layer, ConvModule):
                continue
            if layer.order != ('conv', 'norm', 'act'):
                raise ValueError(f'{name}: {family} convs must run conv, '
                                 f'norm, act; got order {layer.order}')
            if layer.with_norm and not isinstance(
                    layer.norm, (_BatchNorm, nn.LayerNorm)):
                raise TypeError(
                    f'{name}: {family} convs have a '
                    f'{type(layer.norm).__name__}; channel pruning handles '
                    'batch norms and channel-wise layer norms')
        #: the widths as built by the parent class (what is not pruned)
        self.dense_channel_widths = self.channel_widths
        if channel_widths is not None:
            self._rebuild(
                self._parse_widths(channel_widths, dense_width))
        families = self._parse_groups(channel_prune)
        widths = self.channel_widths
        members = {}
        for family, _, member, _ in self._placement():
            members[family] = max(members.get(family, 0), member + 1)
        self.compactors = nn.ModuleDict({
            family: nn.ModuleList(
                ChannelGroup(family, members[family], 1, width)
                for width in widths[family])
            for family in families
        })

    def _parse_groups(self, channel_prune: Optional[Dict]) -> Tuple[str, ...]:
        if channel_prune is None:
            return ()
        name = type(self).__name__
        if not isinstance(channel_prune, dict) or \
                set(channel_prune) - {'groups'}:
            raise ValueError(
                f'{name}: channel_prune takes dict(groups={self.FAMILIES}) '
                '(the ratios and schedule belong to CDCPHook), got '
                f'{channel_prune!r}')
        groups = tuple(channel_prune.get('groups', self.FAMILIES))
        unknown = sorted(set(groups) - set(self.FAMILIES))
        if unknown:
            raise ValueError(f'{name}: unknown channel groups {unknown}; '
                             f'it has {self.FAMILIES}')
        return tuple(f for f in self.FAMILIES if f in groups)

    @property
    def is_pruned(self) -> bool:
        """Whether the head has compactors or narrower layers than its
        parent class builds (what an export has to record)."""
        return bool(self.compactors) or \
            self.channel_widths != self.dense_channel_widths

    @property
    def channel_widths(self) -> Dict[str, List[int]]:
        """The output channels of every group by family (what an export
        writes to rebuild the head)."""
        widths = {family: [] for family in self.FAMILIES}
        for family, _, member, layer in self._placement():
            if member == 0:
                widths[family].append(_out_channels(layer))
        return widths

    def _parse_widths(self, channel_widths: Dict,
                      dense_width: int) -> Dict[str, List[int]]:
        name = type(self).__name__
        if not isinstance(channel_widths, dict) or \
                set(channel_widths) - set(self.FAMILIES):
            raise ValueError(
                f'{name}: channel_widths takes a dict with keys '
                f'{self.FAMILIES}, got {channel_widths!r}')
        widths = self.channel_widths
        for family, value in channel_widths.items():
            count = len(widths[family])
            if isinstance(value, float):
                value = dense_width - num_to_prune(value, dense_width, family)
            values = [value] * count if isinstance(value, int) else list(
                value)
            if len(values) != count or not all(
                    isinstance(v, int) and v > 0 for v in values):
                raise ValueError(
                    f'{name}: channel_widths[{family!r}] must be a positive '
                    f'int, a list of {count} of them or a pruning ratio, got '
                    f'{value!r}')
            widths[family] = values
        return widths

    @staticmethod
    def _width(source: Source, widths: Dict[str, List[int]]) -> int:
        if isinstance(source, int):
            return source
        return widths[source[0]][source[1]]

    def _rebuild(self, widths: Dict[str, List[int]]) -> None:
        """Every grouped and tail layer at ``widths`` (fresh weights)."""
        for family, index, member, layer in list(self._placement()):
            inputs = sum(self._width(s, widths)
                         for s in self._sources(family, index, member))
            self._set_layer(family, index, member,
                            _new_like(layer, inputs, widths[family][index]))
        for path, layer, sources in list(self._tails()):
            inputs = sum(self._width(s, widths) for s in sources)
            _set_submodule(self, path, _new_like(layer, inputs, None))

    # ------------------------------------------------------------ CDCP
    def channel_groups(self) -> Dict[str, List[Tuple[int, ChannelGroup]]]:
        """The head's CDCP groups by family, as ``(index, group)``."""
        return {
            family: list(enumerate(groups))
            for family, groups in self.compactors.items()
        }

    def _group(self, family: str, index: int) -> Optional[ChannelGroup]:
        if family not in self.compactors:
            return None
        return self.compactors[family][index]

    def _compactor(self, family: str, index: int, member: int,
                   x: Tensor) -> Tensor:
        """``x`` (the layer's output, ``(N, C)`` or ``(N, C, H, W)``) through
        its group's compactor (masked in eval mode); ``x`` itself without
        one."""
        group = self._group(family, index)
        if group is None:
            return x
        compactor = group.compactors(masked=not self.training)[member, 0]
        if x.dim() == 2:
            return x @ compactor.to(x.dtype).t()
        return apply_compactor(x, compactor)

    def _conv(self, family: str, index: int, member: int, conv: ConvModule,
              x: Tensor) -> Tensor:
        """A ConvModule with its group's compactor between norm and
        activation; before a layer norm, which then leaves the pruned
        channels out of its statistics (:func:`masked_channel_norm`)."""
        group = self._group(family, index)
        if group is None:
            return conv(x)
        x = conv.conv(x)
        if _channel_norm(conv):
            norm = conv.norm
            x = masked_channel_norm(
                self._compactor(family, index, member, x), ~group.pruned[0],
                norm.weight, norm.bias, norm.eps)
        else:
            if conv.with_norm:
                x = conv.norm(x)
            x = self._compactor(family, index, member, x)
        return conv.activate(x) if conv.with_activation else x

    @torch.no_grad()
    def compact(self):
        """Fold every compactor into its layer (and norm) and remove the
        pruned channels (outputs, and the matching input columns of every
        consumer), in place. The result has no compactors, computes what
        the masked head computes in eval mode, and is in eval mode."""
        widths = self.channel_widths
        kept = {}
        for family in self.FAMILIES:
            for i, width in enumerate(widths[family]):
                group = self._group(family, i)
                kept[(family, i)] = kept_channels(
                    None if group is None else group.pruned[0], width)

        def columns(sources):
            return input_columns(
                [torch.arange(s) if isinstance(s, int) else kept[s]
                 for s in sources], [self._width(s, widths) for s in sources])

        for family, index, member, layer in list(self._placement()):
            group = self._group(family, index)
            compactor = None if group is None else group.compactors(
                masked=True)[member, 0]
            weight, bias = _fold(layer, compactor)
            rows = kept[(family, index)].to(weight.device)
            cols = columns(self._sources(family, index, member)).to(
                weight.device)
            new = _new_like(layer, len(cols), len(rows)).to(weight.device)
            _load(new, weight[rows][:, cols], bias[rows])
            if _channel_norm(layer):
                new.norm.load_state_dict(
                    {k: v[rows] for k, v in layer.norm.state_dict().items()})
            self._set_layer(family, index, member, new)
        for path, layer, sources in list(self._tails()):
            cols = columns(sources)
            new = _new_like(layer, len(cols), None).to(_weight(layer).device)
            _load_tail(new, layer, cols.to(_weight(layer).device))
            _set_submodule(self, path, new)
        self.compactors = nn.ModuleDict()
        return self.eval()


def _weight(layer: nn.Module) -> Tensor:
    return (layer.conv if isinstance(layer, ConvModule) else layer).weight


def _out_channels(layer: nn.Module) -> int:
    if isinstance(layer, ConvModule):
        return layer.conv.out_channels
    if isinstance(layer, nn.Linear):
        return layer.out_features
    return layer.out_channels


def _channel_norm(layer: nn.Module) -> bool:
    """Whether ``layer`` is a ConvModule with a channel-wise layer norm."""
    return isinstance(layer, ConvModule) and layer.with_norm and \
        isinstance(layer.norm, nn.LayerNorm)


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition('.')
    setattr(root.get_submodule(parent) if parent else root, name, module)


def _fold(layer: nn.Module,
          compactor: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """``layer``'s weight and bias with ``compactor`` folded in, through its
    batch norm (eval mode) if it has one; a layer norm comes after the
    compactor and stays (its kept channels' parameters)."""
    if not isinstance(layer, ConvModule):
        return fold_conv(layer.weight, layer.bias, None, compactor)
    norm = layer.norm if layer.with_norm and not _channel_norm(
        layer) else None
    stats = None if norm is None else (norm.running_mean, norm.running_var,
                                       norm.weight, norm.bias, norm.eps)
    return fold_conv(layer.conv.weight, layer.conv.bias, stats, compactor)


def _new_like(layer: nn.Module, inputs: int,
              outputs: Optional[int]) -> nn.Module:
    """A layer like ``layer`` with ``inputs`` input channels and
    ``outputs`` output channels (``None``: as ``layer``)."""
    outputs = _out_channels(layer) if outputs is None else outputs
    if isinstance(layer, nn.Linear):
        return nn.Linear(inputs, outputs, bias=layer.bias is not None)
    conv = layer.conv if isinstance(layer, ConvModule) else layer
    kwargs = dict(stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, bias=conv.bias is not None)
    if isinstance(layer, ConvModule):
        return ConvModule(
            inputs, outputs, conv.kernel_size, conv_cfg=layer.conv_cfg,
            norm_cfg=layer.norm_cfg, act_cfg=layer.act_cfg,
            inplace=layer.inplace, order=layer.order, **kwargs)
    return type(conv)(inputs, outputs, conv.kernel_size, **kwargs)


def _load(layer: nn.Module, weight: Tensor, bias: Tensor) -> None:
    """Give a fresh grouped ``layer`` a folded ``weight`` and ``bias``: in
    the conv, or, with a batch norm, as the shift of an identity norm
    (running mean 0, variance 1, scale ``sqrt(1 + eps)``), so the slim head
    keeps the dense head's layers. (A layer norm's parameters are the
    caller's.)"""
    conv = layer.conv if isinstance(layer, ConvModule) else layer
    conv.weight.copy_(weight.reshape(conv.weight.shape))
    if _channel_norm(layer):
        if conv.bias is not None:
            conv.bias.copy_(bias)
        return
    if not (isinstance(layer, ConvModule) and layer.with_norm):
        conv.bias.copy_(bias)
        return
    if conv.bias is not None:
        conv.bias.zero_()
    norm = layer.norm
    norm.running_mean.zero_()
    norm.running_var.fill_(1.)
    norm.weight.fill_((1. + norm.eps)**0.5)
    norm.bias.copy_(bias)


def _load_tail(new: nn.Module, old: nn.Module, cols: Tensor) -> None:
    """``old``'s weights restricted to the input channels ``cols``."""
    if isinstance(old, ConvModule):
        new.load_state_dict({
            k: v[:, cols] if k == 'conv.weight' else v
            for k, v in old.state_dict().items()
        })
        return
    # a transposed conv's weight is (in, out, kh, kw)
    by_input = isinstance(old, nn.ConvTranspose2d)
    weight = old.weight[cols] if by_input else old.weight[:, cols]
    new.weight.copy_(weight)
    if old.bias is not None:
        new.bias.copy_(old.bias)
