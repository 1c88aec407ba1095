"""CDCP: consistent dynamic channel pruning, the parts without a trainer.

- :func:`ramp_ratio`: the target pruning ratio at an iteration (0 until
  ``begin``, linear up to the final ratio at ``end``);
- :func:`compact_block`: a physically smaller :class:`Block` from a block
  with compactors: each compactor is folded into the linear layer before it
  and the pruned channels are removed (rows of ``qkv``/``fc1``, the matching
  input columns of ``proj``/``fc2``). The result has no compactors and no
  masks, and computes what the masked block computes.

Where selection, the group-lasso pull and logging happen during training is
the trainer's business (``cait_mm.engine.CDCPHook``).
"""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .compactor import ChannelGroup
from .vit_layers import CHANNEL_GROUPS, Block, check_channel_groups


def parse_channel_prune(channel_prune: Optional[Dict]) -> Tuple[str, ...]:
    """The CDCP groups that a ViT's ``channel_prune=dict(groups=...)`` asks
    compactors for (all three by default); none without it."""
    if channel_prune is None:
        return ()
    unknown = set(channel_prune) - {'groups'}
    if unknown:
        raise ValueError(f'channel_prune: unknown keys {sorted(unknown)}; it '
                         "takes groups=('qk', 'v', 'mlp') (the ratios and "
                         'schedule belong to CDCPHook)')
    return check_channel_groups(
        channel_prune.get('groups', CHANNEL_GROUPS))


def ramp_ratio(final: float, iteration: int, begin: int, end: int) -> float:
    """Target ratio at ``iteration``: 0 before ``begin``, ``final`` from
    ``end`` on, linear in between."""
    if iteration < begin:
        return 0.
    if iteration >= end:
        return float(final)
    return float(final) * (iteration - begin) / (end - begin)


def block_widths(block: Block) -> Dict[str, int]:
    """The widths a :class:`Block` is built with: per-head ``qk_dim`` and
    ``v_dim`` and ``mlp_hidden``; after :func:`compact_block`, the pruned
    ones."""
    return dict(
        qk_dim=block.attn.qk_dim,
        v_dim=block.attn.v_dim,
        mlp_hidden=block.mlp.fc1.out_features)


def _kept(group, heads: int, dim: int, device) -> Tensor:
    """``(heads, kept)`` channel indices; all of them without a group."""
    if group is None:
        return torch.arange(dim, device=device).expand(heads, dim)
    return group.kept_index()


def _rows(kept: Tensor, dim: int) -> Tensor:
    """Flat row indices of kept channels ``(heads, k)`` in a layer whose
    rows are ``heads`` blocks of ``dim``."""
    offset = torch.arange(kept.shape[0], device=kept.device)[:, None] * dim
    return (kept + offset).flatten()


@torch.no_grad()
def compact_block(block: Block) -> Block:
    """Fold the compactors of ``block`` and drop its pruned channels.

    Where the compactors sit is the layers' to say
    (:attr:`Attention.QKV_SLICES`, :meth:`Attention.folded_qkv`,
    :meth:`Mlp.folded_fc1`); this only keeps the rows of the kept channels
    and the matching input columns of ``proj`` and ``fc2``.

    Returns:
        Block: a new block without compactors, with per-head widths
        ``qk_dim``, ``v_dim`` and ``mlp_hidden`` reduced to the kept
        channels, in eval mode; ``block`` is not modified.
    """
    attn, mlp = block.attn, block.mlp
    h = attn.num_heads
    dim = attn.proj.out_features
    device = attn.qkv.weight.device
    groups = block.compactors()
    keep = {
        kind: _kept(groups.get(kind), h, width, device)
        for kind, width in attn.head_dims.items()
    }
    keep_mlp = _kept(groups.get('mlp'), 1, mlp.fc1.out_features, device)[0]

    weights, biases = attn.folded_qkv(masked=True)
    rows = [_rows(keep[kind], attn.head_dims[kind])
            for _, kind, _ in attn.QKV_SLICES]
    has_bias = attn.qkv.bias is not None
    qkv_weight = torch.cat([w[r] for w, r in zip(weights, rows)])
    qkv_bias = torch.cat([b[r] for b, r in zip(biases, rows)]) \
        if has_bias else None
    fc1_weight, fc1_bias = mlp.folded_fc1(masked=True)
    keep_qk, keep_v = keep['qk'], keep['v']
    dv = attn.v_dim

    new = Block(
        dim,
        h,
        len(keep_mlp),
        qkv_bias=has_bias,
        qk_dim=keep_qk.shape[1],
        v_dim=keep_v.shape[1],
        act_layer=type(mlp.act))
    new.attn.scale = attn.scale  # the unpruned head width's
    new.attn.attn_drop = attn.attn_drop
    new.attn.proj_drop = attn.proj_drop
    new.norm1.load_state_dict(block.norm1.state_dict())
    new.norm2.load_state_dict(block.norm2.state_dict())
    new.drop_path = block.drop_path
    new.mlp.drop1, new.mlp.drop2 = mlp.drop1, mlp.drop2
    new.attn.qkv.weight.copy_(qkv_weight)
    if has_bias:
        new.attn.qkv.bias.copy_(qkv_bias)
    new.attn.proj.weight.copy_(attn.proj.weight[:, _rows(keep_v, dv)])
    new.attn.proj.bias.copy_(attn.proj.bias)
    new.mlp.fc1.weight.copy_(fc1_weight[keep_mlp])
    new.mlp.fc1.bias.copy_(fc1_bias[keep_mlp])
    new.mlp.fc2.weight.copy_(mlp.fc2.weight[:, keep_mlp])
    new.mlp.fc2.bias.copy_(mlp.fc2.bias)
    return new.to(device=device, dtype=attn.qkv.weight.dtype).eval()


def channel_groups(
        blocks: nn.ModuleList) -> Dict[str, List[Tuple[int, ChannelGroup]]]:
    """The CDCP groups of ``blocks`` by kind, as ``(block index, group)``
    in block order (kinds present in no block are left out)."""
    found: Dict[str, List[Tuple[int, ChannelGroup]]] = {}
    for index, block in enumerate(blocks):
        for kind, group in block.compactors().items():
            found.setdefault(kind, []).append((index, group))
    return found
