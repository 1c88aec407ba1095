"""ATME: asymmetric token merging that keeps tokens on a 2-D grid.

Horizontal token merging (HTM) pairs adjacent tokens ``(2j, 2j+1)`` along each
row and merges the odd token into its even neighbour (a one-way merge); the
``r`` most similar pairs of every row merge, so every row loses exactly ``r``
tokens and the result is a regular ``(H, W - r)`` grid in the original order.
Vertical token merging (VTM) does the same along columns. Similarity is the
cosine similarity of the two tokens' attention keys, averaged over heads.
Merges are size-weighted averages, and token sizes feed proportional
attention (``log(size)`` added to the logits).

Padded batches (``TokenState.valid_shape``): pairs are only formed inside an
image's content, ``r`` follows the content's own length, and the extra tokens
a row must lose to keep the batch a regular grid are taken from its padding.
So an image's merges do not depend on what it is batched with.
"""
from typing import Dict, Optional, Sequence, Set, Tuple, Union

import torch
from torch import Tensor

from .atme_schedules import parse_schedule
from .token_reducer import TokenReducer, register_token_reducer
from .token_state import TokenState
from .vit_layers import AttentionInfo

GRANULARITIES = ('token', 'line')


def key_metric(keys: Tensor, num_prefix: int) -> Tensor:
    """Per-head L2-normalised keys of the patch tokens, ``(B, N, h * d)``,
    scaled so that a dot product is the cosine similarity averaged over the
    ``h`` heads."""
    B, h, _, d = keys.shape
    k = keys[:, :, num_prefix:]
    k = k / k.norm(dim=-1, keepdim=True).clamp_min(1e-6) / h**0.5
    return k.transpose(1, 2).reshape(B, -1, h * d)


def merge_lines(x: Tensor,
                metric: Tensor,
                size: Optional[Tensor],
                ratio: float,
                line_mode: bool,
                valid_len: Optional[Tensor] = None,
                valid_lines: Optional[Tensor] = None):
    """Merge adjacent pairs along the last grid axis of ``x``.

    Args:
        x (Tensor): Tokens ``(B, L, M, C)``: ``L`` lines of ``M`` tokens.
        metric (Tensor): ``(B, L, M, D)``; pair similarity is a dot product.
        size (Tensor, optional): Token sizes ``(B, L, M)``; ``None`` = 1.
        ratio (float): Fraction of the candidate pairs merged per line.
        line_mode (bool): Merge whole pairs of lines-positions (the same
            pairs in every line, chosen by similarity averaged along the
            line) instead of choosing per line.
        valid_len (Tensor, optional): ``(B,)`` content length along ``M``.
        valid_lines (Tensor, optional): ``(B,)`` content lines along ``L``.

    Returns:
        tuple: ``x (B, L, M - R, C)``, ``size (B, L, M - R)``, ``newpos
        (B, L, M)`` (the new index along ``M`` that holds each old token),
        and ``merged (B,)``, the content pairs merged per line of each image.
    """
    B, L, M, C = x.shape
    P = M // 2
    device = x.device
    length = torch.full((B, ), M, device=device, dtype=torch.long) \
        if valid_len is None else valid_len
    # num_merges() per image, on tensors
    merged = torch.floor(ratio * (length // 2) + 0.5).long()  # (B,)
    total = int(merged.max()) if B else 0

    even = slice(0, 2 * P, 2)
    odd = slice(1, 2 * P, 2)
    sim = (metric[:, :, even] * metric[:, :, odd]).sum(-1)  # (B, L, P)
    pair_ok = torch.arange(P, device=device)[None] < (length // 2)[:, None]
    if line_mode:
        if valid_lines is None:
            sim = sim.mean(1, keepdim=True)
        else:
            line_ok = torch.arange(L, device=device)[None] < valid_lines[:,
                                                                       None]
            sim = (sim * line_ok[..., None]).sum(1, keepdim=True) \
                / valid_lines[:, None, None]
    sim = sim.masked_fill(~pair_ok[:, None], float('-inf'))
    order = sim.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        -1, order,
        torch.arange(P, device=device).expand_as(order).contiguous())
    merge = (rank < merged[:, None, None]).expand(B, L, P)  # (B, L, P)

    ones = x.new_ones(B, L, M) if size is None else size
    s_even, s_odd = ones[:, :, even], ones[:, :, odd]
    total_size = s_even + s_odd
    mixed = (x[:, :, even] * s_even[..., None] +
             x[:, :, odd] * s_odd[..., None]) / total_size[..., None]
    x = x.clone()
    x[:, :, even] = torch.where(merge[..., None], mixed, x[:, :, even])
    new_size = ones.clone()
    new_size[:, :, even] = torch.where(merge, total_size, s_even)

    # A token stays unless it is the odd half of a merged pair, or one of
    # the padding tokens dropped so that every line loses ``total``.
    keep = torch.ones(B, L, M, dtype=torch.bool, device=device)
    keep[:, :, odd] = ~merge
    drop_pad = total - merged  # (B,), fits in the padding (see module doc)
    keep &= torch.arange(M, device=device)[None, None] < (M - drop_pad)[:,
                                                                       None,
                                                                       None]
    newpos = keep.cumsum(-1) - 1
    index = (~keep).to(torch.uint8).argsort(dim=-1, stable=True)[..., :M -
                                                                   total]
    x = x.gather(2, index[..., None].expand(-1, -1, -1, C))
    new_size = new_size.gather(2, index)
    return x, new_size, newpos, merged


@register_token_reducer
class ATME(TokenReducer):
    """Asymmetric token merging (HTM/VTM) on a per-block schedule.

    Args:
        num_layers (int): Blocks of the ViT.
        schedule (str | Sequence): A preset name (``'deit-t'``,
            ``'deit-s'``, ``'deit-b'``, see
            :mod:`cait_mm.core.atme_schedules`) or entries
            ``(block, direction, ratio)``: after the attention of ``block``,
            merge along ``'h'`` (rows) or ``'v'`` (columns) ``ratio`` of the
            candidate pairs of every line, rounded half up.
        granularity (str): ``'token'`` (each line picks its own pairs) or
            ``'line'`` (whole column/row pairs, the grid stays separable).
    """

    def __init__(self,
                 num_layers: int,
                 schedule: Union[str, Sequence],
                 granularity: str = 'token'):
        super().__init__(num_layers)
        if granularity not in GRANULARITIES:
            raise ValueError(f'ATME granularity must be one of '
                             f'{GRANULARITIES}, got {granularity!r}')
        self.granularity = granularity
        self.schedule = parse_schedule(schedule, num_layers)

    @property
    def blocks(self) -> Set[int]:
        return set(self.schedule)

    def config(self) -> Dict:
        return dict(
            schedule=[[b, d, r] for b, (d, r) in sorted(self.schedule.items())],
            granularity=self.granularity)

    def extra_repr(self) -> str:
        steps = ', '.join(f'{b}{d}{r:g}'
                          for b, (d, r) in sorted(self.schedule.items()))
        return f'granularity={self.granularity}, schedule=[{steps}]'

    def forward(self, block_index: int, x: Tensor, attn: AttentionInfo,
                state: TokenState,
                num_prefix: int) -> Tuple[Tensor, TokenState]:
        direction, ratio = self.schedule[block_index]
        if state.shape is None:
            raise RuntimeError('ATME needs tokens on a grid; another reducer '
                               'already broke it')
        H, W = state.shape
        B, _, C = x.shape
        prefix = x[:, :num_prefix]
        grid = x[:, num_prefix:].reshape(B, H, W, C)
        metric = key_metric(attn.k, num_prefix).view(B, H, W, -1)
        size = None if state.size is None else state.size.view(B, H, W)
        valid = state.valid_shape
        vertical = direction == 'v'
        if vertical:
            grid, metric = grid.transpose(1, 2), metric.transpose(1, 2)
            size = None if size is None else size.transpose(1, 2)
        axis, line_axis = (0, 1) if vertical else (1, 0)
        grid, size, newpos, merged = merge_lines(
            grid,
            metric,
            size,
            ratio,
            line_mode=self.granularity == 'line',
            valid_len=None if valid is None else valid[:, axis],
            valid_lines=None if valid is None else valid[:, line_axis])
        new_len = grid.shape[2]
        if vertical:
            grid, size = grid.transpose(1, 2), size.transpose(1, 2)
            newpos = newpos.transpose(1, 2)  # (B, H, W): new row index
            flat = newpos * W + torch.arange(W, device=x.device)
            shape = (new_len, W)
        else:
            flat = torch.arange(H, device=x.device)[:, None] * new_len \
                + newpos
            shape = (H, new_len)
        flat = flat.reshape(B, H * W)
        source = flat if state.source is None else flat.gather(
            1, state.source)
        if valid is not None:
            valid = valid.clone()
            valid[:, axis] -= merged
        x = torch.cat([prefix, grid.reshape(B, -1, C)], dim=1)
        return x, TokenState(
            grid_size=state.grid_size,
            shape=shape,
            size=size.reshape(B, -1),
            source=source,
            valid_shape=valid)

