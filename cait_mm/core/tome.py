"""ToMe: token merging by bipartite soft matching (Bolya et al., ICLR 2023),
written from the paper's description, with a source map for dense
restoration.

In every block it acts in, after the attention, the patch tokens are split
into two alternating sets, ``A`` (even positions) and ``B`` (odd). Each
token of ``A`` is matched to its most similar token of ``B`` (cosine of the
attention keys, averaged over heads); the ``r`` best-matched ``A`` tokens
are merged into their ``B`` partners by size-weighted average, the others
stay. Sizes feed proportional attention (``log(size)`` added to the
logits). Unlike ATME, the merged tokens no longer form a grid; every
original patch keeps pointing at the token that holds it, so the full map
is restored by one gather, as for the other reducers (ToMe's "unmerge").
"""
from typing import Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

import torch
from torch import Tensor

from .batch_rows import prefix_rows, row_start, shape_cached
from .token_reducer import TokenReducer, register_token_reducer, steady_counts
from .token_state import TokenState
from .vit_layers import AttentionInfo


class _Tables(NamedTuple):
    """Index tables of a ToMe step that depend on shapes only."""
    prefix_rows: Tensor  # (B, P): rows of the prefix tokens in x
    a_start: Tensor  # (B, 1): row of patch 0 (A tokens are the even ones)
    b_rows: Tensor  # (B, |B|): rows of the B tokens in x
    b_start_out: Tensor  # (B, 1): row of B token 0 in the output
    kept_positions: Tensor  # (B, |A| - r): 0, 1, ...
    b_positions: Tensor  # (B, |B|): num_kept, num_kept + 1, ...


def _tables(batch: int, length: int, num_prefix: int, num_kept: int,
            device: torch.device) -> _Tables:
    num_b = (length - num_prefix) // 2
    a_start = row_start(batch, length, num_prefix, device)
    steps = torch.arange(max(num_b, num_kept), device=device)
    return _Tables(
        prefix_rows=prefix_rows(batch, length, num_prefix, device),
        a_start=a_start,
        b_rows=a_start + 1 + 2 * steps[:num_b],
        b_start_out=row_start(batch, num_prefix + num_kept + num_b,
                              num_prefix + num_kept, device),
        kept_positions=steps[:num_kept].expand(batch, -1),
        b_positions=(num_kept + steps[:num_b]).expand(batch, -1))


@register_token_reducer
class ToMe(TokenReducer):
    """Bipartite soft matching, ``r`` merges per block.

    Args:
        num_layers (int): Blocks of the ViT.
        embed_dims (int, optional): Token width (unused: no weights).
        r (int, optional): Tokens merged away in each block it acts in
            (fewer when a block has fewer than ``2 r`` patch tokens), as in
            the paper: a 196-token DeiT at ``r=8`` on all 12 blocks ends
            with 100. Default 8 unless ``ratio`` is given.
        ratio (float, optional): Instead of ``r``, merge ``ratio`` of the
            patch tokens entering each block (rounded half up, at most half
            of them), so that one setting reduces inputs of any size alike
            (dense tasks train on crops and test on whole images).
        blocks (Sequence[int], optional): The blocks it acts in; all by
            default, as in the paper.
    """
    flops_knobs = dict(r=('int', 0, None), ratio=('float', 0., 0.5))

    def __init__(self,
                 num_layers: int,
                 embed_dims: Optional[int] = None,
                 r: Optional[int] = None,
                 ratio: Optional[float] = None,
                 blocks: Optional[Sequence[int]] = None):
        super().__init__(num_layers, embed_dims)
        if r is not None and ratio is not None:
            raise ValueError('ToMe: set r or ratio, not both')
        if ratio is None:
            r = 8 if r is None else r
            if isinstance(r, bool) or not isinstance(r, int) or r < 0:
                raise ValueError(f'ToMe: r must be an int >= 0, got {r!r}')
        elif isinstance(ratio, bool) or not isinstance(
                ratio, (int, float)) or not 0 <= ratio <= 0.5:
            raise ValueError(f'ToMe: ratio={ratio!r} is outside [0, 0.5]')
        blocks = tuple(range(num_layers)) if blocks is None else tuple(blocks)
        bad = [b for b in blocks if not 0 <= b < num_layers]
        if bad or len(set(blocks)) != len(blocks):
            raise ValueError(f'ToMe: blocks {list(blocks)} must be distinct '
                             f'indices in [0, {num_layers - 1}]')
        self.r = r
        self.ratio = None if ratio is None else float(ratio)
        self.at = tuple(sorted(blocks))

    @property
    def blocks(self) -> Set[int]:
        return set(self.at)

    def settings(self) -> Dict:
        if self.ratio is not None:
            return dict(ratio=self.ratio, blocks=list(self.at))
        return dict(r=self.r, blocks=list(self.at))

    def merges(self, num_tokens: int) -> int:
        """Tokens one step merges away from ``num_tokens`` patch tokens."""
        r = self.r if self.ratio is None else int(
            self.ratio * num_tokens + 0.5)
        return min(r, num_tokens // 2)

    def token_counts(self, grid: Tuple[int, int]) -> List[int]:
        return steady_counts(grid[0] * grid[1], self.num_layers,
                             set(self.at), self.merges)

    def forward(self, block_index: int, x: Tensor, attn: AttentionInfo,
                state: TokenState,
                num_prefix: int) -> Tuple[Tensor, TokenState]:
        """Merge ``r`` patch tokens of ``x (B, P + N, C)`` into others:
        ``(B, P + N - r, C)``, unmerged ``A`` tokens first (in their order),
        then the ``B`` tokens; see :class:`TokenReducer`."""
        if state.valid_shape is not None:
            raise NotImplementedError(
                'ToMe does not support padded batches: its merge count is '
                'per batch, not per image. Feed images of one size, or use '
                'ATME for padded detection inputs')
        P = num_prefix
        B, T, C = x.shape
        N = T - P
        r = self.merges(N)
        if r == 0:
            return x, state
        device = x.device
        with torch.no_grad():
            metric = attn.k[:, :, P:].mean(1)
            metric = metric / metric.norm(dim=-1, keepdim=True).clamp_min(
                1e-12)
            scores = torch.bmm(metric[:, 0::2],
                               metric[:, 1::2].transpose(1, 2))
            best, partner = scores.max(dim=-1)  # (B, |A|)
            # stable: equal scores merge the earlier token first, in any batch
            order = best.argsort(dim=-1, descending=True, stable=True)
            src = order[:, :r]
            kept = order[:, r:].sort(dim=-1).values
            dst = partner.gather(1, src)
        num_kept, num_b = kept.shape[1], N // 2
        T2 = P + num_kept + num_b
        tables = shape_cached(('tome', B, T, P, num_kept, device),
                              lambda: _tables(B, T, P, num_kept, device))

        # one selection builds the output: prefix, kept A tokens, B tokens
        flat = x.reshape(B * T, C)
        rows = torch.cat([tables.prefix_rows, kept * 2 + tables.a_start,
                          tables.b_rows], 1)
        out = flat.index_select(0, rows.view(-1))
        # each merged A token adds size_a / (size of its B token after the
        # merge) of its difference to the B token, in place: exact for
        # identical tokens
        size = x.new_ones(B, N) if state.size is None else state.size
        size_b = size[:, 1::2]
        src_size = size[:, 0::2].gather(1, src)
        new_size_b = size_b.scatter_add(1, dst, src_size)
        dst_rows = (dst + tables.b_start_out).view(-1)
        delta = flat.index_select(0, (src * 2 + tables.a_start).view(-1)) \
            - out.index_select(0, dst_rows)
        weight = src_size / new_size_b.gather(1, dst)
        if weight.dtype != x.dtype:
            weight = weight.to(x.dtype)
        out.index_add_(0, dst_rows, delta * weight.view(-1, 1))

        # old patch -> new token: kept A tokens in order, then B
        moved = torch.empty(B, N, dtype=torch.long, device=device)
        moved_a = moved[:, 0::2]
        moved_a.scatter_(1, kept, tables.kept_positions)
        moved_a.scatter_(1, src, dst + num_kept)
        moved[:, 1::2] = tables.b_positions
        source = moved if state.source is None else moved.gather(
            1, state.source)
        new_size = torch.cat([size[:, 0::2].gather(1, kept), new_size_b],
                             dim=1)
        out = out.view(B, T2, C)
        return out, TokenState(
            grid_size=state.grid_size, shape=None, size=new_size,
            source=source)
