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
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from .compactor import ChannelGroup
from .vit_layers import Block


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


def _fold(group, member: int, weight: Tensor, bias):
    if group is None:
        return weight, bias
    return group.fold(group.compactors(masked=True)[member], weight, bias)


def _rows(kept: Tensor, dim: int) -> Tensor:
    """Flat row indices of kept channels ``(heads, k)`` in a layer whose
    rows are ``heads`` blocks of ``dim``."""
    offset = torch.arange(kept.shape[0], device=kept.device)[:, None] * dim
    return (kept + offset).flatten()


@torch.no_grad()
def compact_block(block: Block) -> Block:
    """Fold the compactors of ``block`` and drop its pruned channels.

    Returns:
        Block: a new block without compactors, with per-head widths
        ``qk_dim``, ``v_dim`` and ``mlp_hidden`` reduced to the kept
        channels, in eval mode; ``block`` is not modified.
    """
    attn, mlp = block.attn, block.mlp
    h, dq, dv = attn.num_heads, attn.qk_dim, attn.v_dim
    dim = attn.proj.out_features
    device = attn.qkv.weight.device
    keep_qk = _kept(attn.qk_compactor, h, dq, device)
    keep_v = _kept(attn.v_compactor, h, dv, device)
    keep_mlp = _kept(mlp.compactor, 1, mlp.fc1.out_features, device)[0]

    sizes = [h * dq, h * dq, h * dv]
    weights = list(attn.qkv.weight.split(sizes))
    has_bias = attn.qkv.bias is not None
    biases = list(attn.qkv.bias.split(sizes)) if has_bias else [None] * 3
    for part, (group, member) in enumerate(
        ((attn.qk_compactor, 0), (attn.qk_compactor, 1),
         (attn.v_compactor, 0))):
        weights[part], biases[part] = _fold(group, member, weights[part],
                                            biases[part])
    rows = [_rows(keep_qk, dq), _rows(keep_qk, dq), _rows(keep_v, dv)]
    qkv_weight = torch.cat([w[r] for w, r in zip(weights, rows)])
    qkv_bias = torch.cat([b[r] for b, r in zip(biases, rows)]) \
        if has_bias else None
    fc1_weight, fc1_bias = _fold(mlp.compactor, 0, mlp.fc1.weight,
                                 mlp.fc1.bias)

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
        for group in (block.attn.qk_compactor, block.attn.v_compactor,
                      block.mlp.compactor):
            if group is not None:
                found.setdefault(group.kind, []).append((index, group))
    return found
