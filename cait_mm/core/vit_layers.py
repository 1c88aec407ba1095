"""Transformer layers of a plain ViT, shaped for token and channel reduction.

Parameter names follow timm's ``VisionTransformer`` (``qkv``, ``proj``,
``norm1``, ``mlp.fc1`` ...), so official DeiT/timm weights load without
renaming. Unlike timm's block, :class:`Block` splits into an attention half and
an MLP half: token reducers act between the two (where the attention keys are
at hand), and per-head widths can shrink independently for query/key and value
channels once a model is channel-pruned.

CDCP channel pruning adds :class:`~cait_mm.core.compactor.ChannelGroup`
compactors after ``qkv`` (groups ``'qk'`` and ``'v'``) and ``mlp.fc1``
(``'mlp'``). They are folded into those layers' weights on the fly, so a
training step costs one matmul per layer, as without them; in eval mode the
pruned channels are masked, so the model computes what its export computes.
"""
from functools import partial
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

from .batch_rows import shape_cached
from .compactor import ChannelGroup

CHANNEL_GROUPS = ('qk', 'v', 'mlp')


def dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or ``nn.Identity()`` for ``p == 0``: a dropout of
    0 still dispatches an operator in every call, 37 of a ViT-12's forward
    (each a host cost in eager mode on a GPU, where the forward is
    host-bound), for nothing."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def check_channel_groups(groups: Sequence[str]) -> Tuple[str, ...]:
    """Validate a list of CDCP channel group names."""
    groups = tuple(groups)
    unknown = [g for g in groups if g not in CHANNEL_GROUPS]
    if unknown or len(set(groups)) != len(groups):
        raise ValueError(f'channel groups must be distinct names from '
                         f'{CHANNEL_GROUPS}, got {list(groups)}')
    return groups


def attention_dtype(x: Tensor) -> torch.dtype:
    """The dtype attention computes in for inputs ``x``: autocast's, if it
    is on for ``x``'s device, else ``x``'s (so an attention bias can be
    built in it once, not cast in every block)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def fold_bias(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float
              ) -> Tuple[Tensor, Tensor, Tensor]:
    """Fold an additive key bias into the heads, so that attention needs no
    mask and a fused kernel that takes none (FlashAttention) can run.

    With ``q' = [q, 1 / scale, 0...]``, ``k' = [k, bias, 0...]`` and
    ``v' = [v, 0...]`` (head dim padded to a multiple of 8, as fused
    kernels want), ``softmax(scale * q' k'^T) v'`` is
    ``[softmax(scale * q k^T + bias) v, 0...]``: exact up to float rounding
    (``-inf`` biases included: ``1 / scale * -inf``; but CUDA's tiled
    kernels need finite ones,
    :func:`~cait_mm.core.token_state.padding_bias`).

    Args:
        q, k (Tensor): ``(B, h, N, d_qk)``.
        v (Tensor): ``(B, h, N, d_v)``.
        bias (Tensor): ``(B, 1, 1, N)``, added to the logits of every query.
        scale (float): Softmax scale of ``q k^T``.

    Returns:
        tuple: ``q', k', v'`` of head dim ``D = ceil((max(d_qk, d_v) + 1) /
        8) * 8``; the output's first ``d_v`` channels are attention's.
    """
    B, h, N, d = q.shape
    d_v = v.shape[-1]
    width = -(-(max(d, d_v) + 1) // 8) * 8
    # one cat per tensor with constant channels (cached, expanded: no
    # copy): 3 kernels a block, where pads and an in-place write of the
    # bias took 9; the scale sits in q's constant channel, so the bias
    # column is the bias itself, not a quotient computed in every block
    q_extra = _channels(width - d, 1. / scale, q)
    q = torch.cat([q, q_extra.expand(B, h, N, -1)], -1)
    k_extra = [k, bias.view(B, 1, N, 1).expand(B, h, N, 1)]
    if width - d > 1:
        k_extra.append(_channels(width - d - 1, 0., k).expand(B, h, N, -1))
    v = torch.cat([v, _channels(width - d_v, 0., v).expand(B, h, N, -1)],
                  -1)
    return q, torch.cat(k_extra, -1), v


def _channels(n: int, first: float, like: Tensor) -> Tensor:
    """``[first, 0, ...]`` of length ``n`` in ``like``'s dtype and device,
    built once."""
    def build():
        out = like.new_zeros(n)
        out[0] = first
        return out
    return shape_cached(('fold_channels', n, first, like.dtype, like.device),
                        build)


class AttentionInfo(NamedTuple):
    """What a token reducer may need from the attention it follows.

    Attributes:
        q (Tensor): Queries ``(B, h, N, qk_dim)``.
        k (Tensor): Keys ``(B, h, N, qk_dim)``.
        scale (float): Softmax scale of the logits ``q @ k^T``.
    """
    q: Tensor
    k: Tensor
    scale: float


class Attention(nn.Module):
    """Multi-head self-attention with fused SDPA and an additive bias.

    Args:
        dim (int): Width of the residual stream ``C``.
        num_heads (int): Number of heads ``h``.
        qkv_bias (bool): Bias in the ``qkv`` projection.
        attn_drop (float): Dropout on attention probabilities.
        proj_drop (float): Dropout after the output projection.
        qk_dim (int, optional): Per-head query/key width. Defaults to
            ``dim // num_heads``; smaller after channel pruning.
        v_dim (int, optional): Per-head value width, as ``qk_dim``.
        scale (float, optional): Softmax scale. Defaults to the *unpruned*
            head width's ``1 / sqrt(dim // num_heads)``, so a pruned model
            computes the same logits as the masked model it came from.
        channel_groups (Sequence[str]): CDCP groups to give compactors:
            ``'qk'`` (query and key dims, one mask) and/or ``'v'``.
    """
    #: Where the attention's CDCP compactors sit, the one place that says
    #: it: ``qkv`` stacks the q, k and v projections, and each slice is
    #: followed by the compactor of a group, as that group's member ``m``.
    #: q and k share the ``'qk'`` group (members 0 and 1), so a head keeps
    #: the same dims of both. The group ``g`` is the module ``g_compactor``.
    QKV_SLICES = (('q', 'qk', 0), ('k', 'qk', 1), ('v', 'v', 0))
    GROUPS = ('qk', 'v')

    def __init__(self,
                 dim: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 qk_dim: Optional[int] = None,
                 v_dim: Optional[int] = None,
                 scale: Optional[float] = None,
                 channel_groups: Sequence[str] = ()):
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f'dim={dim} is not divisible by num_heads={num_heads}')
        head_dim = dim // num_heads
        self.num_heads = num_heads
        self.qk_dim = qk_dim or head_dim
        self.v_dim = v_dim or head_dim
        self.scale = scale if scale is not None else head_dim**-0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(
            dim, num_heads * (2 * self.qk_dim + self.v_dim), bias=qkv_bias)
        self.proj = nn.Linear(num_heads * self.v_dim, dim)
        self.proj_drop = dropout(proj_drop)
        groups = check_channel_groups(channel_groups)
        members = {g: sum(k == g for _, k, _ in self.QKV_SLICES)
                   for g in self.GROUPS}
        for kind in self.GROUPS:
            setattr(
                self, f'{kind}_compactor',
                ChannelGroup(kind, members[kind], num_heads,
                             self.head_dims[kind]) if kind in groups else None)

    @property
    def head_dims(self) -> Dict[str, int]:
        """Per-head width of each group's channels."""
        return dict(qk=self.qk_dim, v=self.v_dim)

    def compactors(self) -> Dict[str, ChannelGroup]:
        """The attention's compactors by group (``'qk'``, ``'v'``)."""
        groups = {kind: getattr(self, f'{kind}_compactor')
                  for kind in self.GROUPS}
        return {kind: g for kind, g in groups.items() if g is not None}

    def folded_qkv(self, masked: bool
                   ) -> Tuple[List[Tensor], List[Optional[Tensor]]]:
        """``qkv``'s weight and bias per slice (q, k, v), each with its
        compactor folded in (:meth:`ChannelGroup.fold`); with ``masked``
        the pruned channels are zeroed."""
        h = self.num_heads
        sizes = [h * self.head_dims[kind] for _, kind, _ in self.QKV_SLICES]
        weights = list(self.qkv.weight.split(sizes))
        bias = self.qkv.bias
        biases = list(bias.split(sizes)) if bias is not None else \
            [None] * len(sizes)
        groups = self.compactors()
        compactors = {kind: g.compactors(masked)
                      for kind, g in groups.items()}
        for i, (_, kind, member) in enumerate(self.QKV_SLICES):
            if kind in groups:
                weights[i], biases[i] = groups[kind].fold(
                    compactors[kind][member], weights[i], biases[i])
        return weights, biases

    def _qkv_params(self) -> Tuple[Tensor, Optional[Tensor]]:
        """``qkv``'s weight and bias with the compactors folded in."""
        weight, bias = self.qkv.weight, self.qkv.bias
        if not self.compactors():
            return weight, bias
        weights, biases = self.folded_qkv(masked=not self.training)
        return torch.cat(weights), (torch.cat(biases)
                                    if bias is not None else None)

    def forward(self,
                x: Tensor,
                attn_bias: Optional[Tensor] = None,
                fold: bool = False) -> Tuple[Tensor, AttentionInfo]:
        """
        Args:
            x (Tensor): Tokens ``(B, N, C)``.
            attn_bias (Tensor, optional): Added to the attention logits,
                broadcastable to ``(B, h, N, N)``; e.g. ``(B, 1, 1, N)``
                holding ``log(size)`` for proportional attention.
            fold (bool): Fold a ``(B, 1, 1, N)`` bias into the heads
                (:func:`fold_bias`) instead of passing it as a mask, so that
                a fused kernel without mask support (FlashAttention on
                CUDA) can run.

        Returns:
            tuple: ``out (B, N, C)`` and the :class:`AttentionInfo` (queries,
            keys, scale) that token reducers score tokens with.
        """
        B, N, _ = x.shape
        h = self.num_heads
        q, k, v = F.linear(x, *self._qkv_params()).split(
            [h * self.qk_dim, h * self.qk_dim, h * self.v_dim], dim=-1)
        q = q.view(B, N, h, self.qk_dim).transpose(1, 2)
        k = k.view(B, N, h, self.qk_dim).transpose(1, 2)
        v = v.view(B, N, h, self.v_dim).transpose(1, 2)
        info = AttentionInfo(q, k, self.scale)
        if attn_bias is not None and attn_bias.dtype != q.dtype:
            attn_bias = attn_bias.to(q.dtype)
        if fold and attn_bias is not None:
            q, k, v = fold_bias(q, k, v, attn_bias, self.scale)
            attn_bias = None
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_bias,
            dropout_p=self.attn_drop if self.training else 0.,
            scale=self.scale)
        if out.shape[-1] != self.v_dim:
            out = out[..., :self.v_dim]
        out = out.transpose(1, 2).reshape(B, N, h * self.v_dim)
        return self.proj_drop(self.proj(out)), info


class Mlp(nn.Module):
    """timm's ViT MLP (``fc1 -> act -> fc2``, same parameter names), with an
    optional CDCP compactor on the hidden units.

    Args:
        in_features (int): Input and output width ``C``.
        hidden_features (int): Hidden width.
        act_layer (callable): Activation; it must map 0 to 0 (GELU does), so
            a masked hidden unit is a removed one.
        drop (float): Dropout after the activation and after ``fc2``.
        channel_groups (Sequence[str]): ``('mlp', )`` to add the compactor.
    """

    def __init__(self,
                 in_features: int,
                 hidden_features: int,
                 act_layer=nn.GELU,
                 drop: float = 0.,
                 channel_groups: Sequence[str] = ()):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = dropout(drop)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = dropout(drop)
        #: CDCP group ``'mlp'``: the hidden units, after ``fc1``.
        self.compactor = ChannelGroup('mlp', 1, 1, hidden_features) \
            if 'mlp' in check_channel_groups(channel_groups) else None

    def compactors(self) -> Dict[str, ChannelGroup]:
        """The MLP's compactor by group (``'mlp'``), if it has one."""
        return {} if self.compactor is None else {'mlp': self.compactor}

    def folded_fc1(self, masked: bool) -> Tuple[Tensor, Tensor]:
        """``fc1``'s weight and bias with the compactor folded in; with
        ``masked`` the pruned hidden units are zeroed."""
        weight, bias = self.fc1.weight, self.fc1.bias
        if self.compactor is None:
            return weight, bias
        return self.compactor.fold(
            self.compactor.compactors(masked)[0], weight, bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, N, C) -> (B, N, C)``."""
        weight, bias = self.folded_fc1(masked=not self.training)
        x = self.drop1(self.act(F.linear(x, weight, bias)))
        return self.drop2(self.fc2(x))


class Block(nn.Module):
    """Pre-norm transformer block (timm's DeiT block, split in two halves).

    Args:
        dim (int): Width of the residual stream ``C``.
        num_heads (int): Number of heads.
        mlp_hidden (int): MLP hidden width (``4 * dim`` in DeiT).
        qkv_bias (bool): Bias in the ``qkv`` projection.
        drop (float): Dropout after projections.
        attn_drop (float): Dropout on attention probabilities.
        drop_path (float): Stochastic depth rate of this block.
        qk_dim (int, optional): Per-head query/key width.
        v_dim (int, optional): Per-head value width.
        norm_layer (callable): Normalisation layer (LayerNorm, eps 1e-6).
        act_layer (callable): MLP activation.
        channel_groups (Sequence[str]): CDCP groups with compactors, any of
            ``'qk'``, ``'v'``, ``'mlp'``.
    """

    def __init__(self,
                 dim: int,
                 num_heads: int,
                 mlp_hidden: int,
                 qkv_bias: bool = True,
                 drop: float = 0.,
                 attn_drop: float = 0.,
                 drop_path: float = 0.,
                 qk_dim: Optional[int] = None,
                 v_dim: Optional[int] = None,
                 norm_layer=partial(nn.LayerNorm, eps=1e-6),
                 act_layer=nn.GELU,
                 channel_groups: Sequence[str] = ()):
        super().__init__()
        groups = check_channel_groups(channel_groups)
        self.norm1 = norm_layer(dim)
        self.attn = Attention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=drop,
            qk_dim=qk_dim,
            v_dim=v_dim,
            channel_groups=[g for g in groups if g != 'mlp'])
        self.drop_path = DropPath(drop_path) if drop_path > 0. \
            else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(
            in_features=dim,
            hidden_features=mlp_hidden,
            act_layer=act_layer,
            drop=drop,
            channel_groups=[g for g in groups if g == 'mlp'])

    def compactors(self) -> Dict[str, ChannelGroup]:
        """The block's CDCP compactors by group (``'qk'``, ``'v'``,
        ``'mlp'``); empty without channel pruning."""
        return {**self.attn.compactors(), **self.mlp.compactors()}

    def forward_attn(self,
                     x: Tensor,
                     attn_bias: Optional[Tensor] = None,
                     fold: bool = False) -> Tuple[Tensor, AttentionInfo]:
        """Residual attention half: ``(B, N, C) -> (B, N, C)``, plus the
        attention's :class:`AttentionInfo` (``fold``: see
        :meth:`Attention.forward`)."""
        out, info = self.attn(self.norm1(x), attn_bias, fold)
        return x + self.drop_path(out), info

    def forward_mlp(self, x: Tensor) -> Tensor:
        """Residual MLP half: ``(B, N, C) -> (B, N, C)``."""
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self,
                x: Tensor,
                attn_bias: Optional[Tensor] = None,
                fold: bool = False) -> Tensor:
        x, _ = self.forward_attn(x, attn_bias, fold)
        return self.forward_mlp(x)
