"""ATMEAdaptive: merges between neighbours, placed by content.

ATME keeps a regular grid, so every row (column) must lose exactly its
share of tokens: it merges one-patch-wide structures and object edges as
readily as flat background. ATMEAdaptive merges as many tokens as ATME at
the same blocks (``schedule``: the token count after each step is what
ATME's grid would hold), or a steady share of them in every block
(``ratio``: ToMe's counts, which keep more tokens in the late blocks at
the same FLOPs), but lets every neighbour pair of the image compete for
those merges:

- **Candidates.** Each token has an *anchor*, the first of its patches in
  raster order. Its candidates are the tokens that hold the patch left of
  its anchor and the patch above it: a horizontal and a vertical neighbour,
  both 4-connected to it, both with an earlier anchor. Two tables of
  constant shape (``(B, N, 2)``) replace ToMe's all-pairs matrix.
- **Choice.** A merge costs what it adds to the within-group squared error
  of the unit keys (mean over heads, as ToMe), Ward's criterion:
  ``s_u s_v / (s_u + s_v) * (1 - cos)`` for sizes ``s``. Each token picks
  its cheaper candidate; the ``r`` cheapest tokens of the whole image merge
  into theirs, size-weighted. (By cosine alone, a large group's smooth mean
  key looks like all its neighbours and it swallows them one after the
  other: a few huge groups across edges and many single patches.)
- **No conflicts, no host sync.** A token may merge into a token that
  merges too; since merges always point to earlier anchors, these chains
  end at a token that stays, found by pointer doubling in
  ``ceil(log2 r)`` gathers. So every step merges exactly ``r`` tokens, for
  any ``r`` below the token count (ToMe's bipartite split needs
  ``r <= N / 2``; a bipartite split restricted to neighbours cannot promise
  any ``r`` once groups have grown), and every merged group is a connected
  patch group (a tree of neighbour merges, each at most as costly as the
  ``r``-th). Groups grow over uniform regions and leave edges alone.
- **Restoration** is the source map every reducer keeps
  (:meth:`~.token_state.TokenState.restore`): one gather.
- **Padded batches.** An image merges the count its own content grid gets
  from the schedule, among its content tokens only; its content tokens come
  first, in their order, and the rest of its row of the batch is padding
  (``TokenState.valid_shape`` holds each image's virtual ATME shape, whose
  area is its content count). So an image's merges do not depend on what it
  is batched with.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .atme import ScheduledReducer
from .atme_schedules import grid_shapes, num_merges, parse_schedule
from .batch_rows import flat_index, prefix_rows, row_start, shape_cached
from .token_reducer import register_token_reducer, steady_counts
from .token_state import TokenState, count_padding
from .vit_layers import AttentionInfo


def neighbour_patches(grid: Tuple[int, int],
                      device: torch.device) -> Tensor:
    """``(H*W, 2)`` long: for each patch of ``grid``, the patch left of it
    and the patch above it; a patch on the left (top) edge names itself
    there, which :func:`candidates` reads as "no candidate"."""
    H, W = grid
    index = torch.arange(H * W, device=device).view(H, W)
    left, up = index.clone(), index.clone()
    left[:, 1:] = index[:, :-1]
    up[1:] = index[:-1]
    return torch.stack([left, up], -1).view(-1, 2)


def anchors(source: Tensor, num_tokens: int) -> Tensor:
    """``(B, N)``, the first original patch (raster order) each token holds.

    Args:
        source (Tensor): ``(B, H0*W0)``, the token holding each patch.
        num_tokens (int): ``N``. A token holding no patch (a padding slot)
            gets the last patch: any valid index does.
    """
    B, N0 = source.shape
    patches = shape_cached(
        ('atme_adaptive_patches', B, N0, source.device),
        lambda: torch.arange(N0, device=source.device).expand(B, N0))
    return source.new_full((B, num_tokens), N0 - 1).scatter_reduce_(
        1, source, patches, 'amin')


def candidates(source: Optional[Tensor], grid: Tuple[int, int],
               batch: int, num_tokens: int,
               device: torch.device) -> Tensor:
    """``(B, N, 2)`` long: the tokens holding the patch left of and above
    each token's anchor (the token itself where there is none).

    Args:
        source (Tensor, optional): ``(B, H0*W0)``; ``None`` while tokens are
            the patches.
        grid (tuple): ``(H0, W0)``.
    """
    table = shape_cached(('atme_adaptive_nb', tuple(grid), device),
                         lambda: neighbour_patches(grid, device))
    if source is None:
        return table.expand(batch, -1, -1)
    near = table[anchors(source, num_tokens)]  # (B, N, 2) patches
    return source.gather(1, near.view(batch, -1)).view(batch, num_tokens, 2)


def candidate_similarity(metric: Tensor, cand: Tensor) -> Tensor:
    """``(B, N, 2)``: cosine of each token's metric with its candidates',
    ``-inf`` where the candidate is the token itself (no candidate).

    Args:
        metric (Tensor): ``(B, N, c)``, L2-normalised.
        cand (Tensor): ``(B, N, 2)``, :func:`candidates`.
    """
    B, N, c = metric.shape
    near = metric.reshape(B * N, c).index_select(
        0, flat_index(cand.reshape(B, -1), N)).view(B, N, 2, c)
    sim = (near * metric.unsqueeze(2)).sum(-1)
    itself = shape_cached(('atme_adaptive_self', N, cand.device),
                          lambda: torch.arange(N, device=cand.device)[:, None])
    return sim.masked_fill(cand == itself, float('-inf'))


def ward_score(sim: Tensor, size: Tensor, cand: Tensor) -> Tensor:
    """Merge scores that weigh the cosine by the sizes (Ward's criterion):
    ``-(s_u s_v / (s_u + s_v)) (1 - cos)``, minus the growth of the
    within-group squared error of unit keys if ``u`` and ``v`` merge.

    A plain cosine lets a large group, whose mean key is smooth, look
    similar to all its neighbours and absorb them one after the other; the
    size weight makes merging two small similar tokens cheaper than
    growing a large group further. Identical tokens still score 0, the
    best.

    Args:
        sim (Tensor): ``(B, N, 2)``, :func:`candidate_similarity`.
        size (Tensor): ``(B, N)`` token sizes.
        cand (Tensor): ``(B, N, 2)``, :func:`candidates`.
    """
    B, N, _ = sim.shape
    near = size.gather(1, cand.view(B, -1)).view(B, N, 2)
    own = size.unsqueeze(-1)
    return (sim - 1) * (own * near / (own + near))


def best_candidates(metric: Tensor, state: TokenState
                    ) -> Tuple[Tensor, Tensor]:
    """Each token's cheaper candidate and its score, ``(B, N)`` each
    (``-inf`` and the token itself where it has none).

    Args:
        metric (Tensor): ``(B, N, c)``, L2-normalised keys.
        state (TokenState): Sizes and source map before the step.
    """
    B, N, _ = metric.shape
    cand = candidates(state.source, state.grid_size, B, N, metric.device)
    sim = candidate_similarity(metric, cand)
    if state.size is not None:
        sim = ward_score(sim, state.size, cand)
    score, side = sim.max(dim=-1)
    return score, cand.gather(2, side.unsqueeze(-1)).squeeze(-1)


def resolve_chains(target: Tensor, steps: int) -> Tensor:
    """Follow ``target`` (``(B, N)``, a token per token, itself for tokens
    that stay) ``2**steps`` times: pointer doubling. A chain of merges
    ``u -> v -> w`` with ``w`` staying sends ``u`` to ``w``."""
    for _ in range(steps):
        target = target.gather(1, target)
    return target


def doubling_steps(r: int) -> int:
    """Doublings that resolve a chain through up to ``r`` merging tokens."""
    return max(r - 1, 0).bit_length()


class MergePlan(NamedTuple):
    """Which tokens of one step merge where (all ``(B, ...)`` long).

    Attributes:
        src (Tensor): ``(B, R)``, the merging tokens (``R``: the most any
            image merges; in a padded batch an image that merges fewer
            repeats a staying token, which then merges into itself).
        dest (Tensor): ``(B, N)``, the token each old token ends in, by its
            old index.
        order (Tensor): ``(B, N2)``, the old index of each new token.
        moved (Tensor): ``(B, N)``, the new index of each old token.
    """
    src: Tensor
    dest: Tensor
    order: Tensor
    moved: Tensor


def plan_merges(score: Tensor, target: Tensor, merges: Sequence[int],
                num_out: int, pad: Optional[Tensor] = None) -> MergePlan:
    """Choose the merging tokens per image and where every token goes.

    Args:
        score (Tensor): ``(B, N)``, ``-inf`` for tokens that may not merge
            (no candidate, padding).
        target (Tensor): ``(B, N)``, each token's chosen candidate.
        merges (Sequence[int]): Per image, the tokens it merges (host ints).
        num_out (int): ``N2``, the tokens of the batch after the step.
        pad (Tensor, optional): ``(B, N)`` bool, the padding tokens of a
            padded batch.
    """
    B, N = score.shape
    device = score.device
    R = max(merges)
    order = score.argsort(dim=-1, descending=True, stable=True)
    src = order[:, :R]
    itself = shape_cached(('atme_adaptive_arange', B, N, device),
                          lambda: torch.arange(N, device=device).expand(B, N))
    new_index = shape_cached(
        ('atme_adaptive_arange', B, num_out, device),
        lambda: torch.arange(num_out, device=device).expand(B, num_out))
    if pad is None and min(merges) == R:
        dest = resolve_chains(itself.scatter(1, src, target.gather(1, src)),
                              doubling_steps(R))
        # the staying tokens in their order (R = N - num_out here)
        kept = order[:, R:].sort(dim=-1).values
        moved = torch.empty_like(itself).scatter_(1, kept, new_index)
        return MergePlan(src, dest, kept, moved.gather(1, dest))

    # padded batch: image b merges its own merges[b]; the others of the R
    # slots repeat a staying token, which merges into itself
    merging = shape_cached(
        ('atme_adaptive_ranks', tuple(merges), R, device),
        lambda: torch.arange(R, device=device)[None] < torch.tensor(
            merges, device=device)[:, None])
    src = torch.where(merging, src, order[:, R:R + 1])
    step = torch.where(merging, target.gather(1, src), src)
    dest = resolve_chains(itself.scatter(1, src, step), doubling_steps(R))
    # new order: each image's staying content tokens in their order, then
    # anything (padding rows, masked by attention)
    gone = dest != itself
    if pad is not None:
        gone = gone | pad
    later = shape_cached(('atme_adaptive_later', B, N, device),
                         lambda: itself + N)
    order = torch.where(gone, later, itself).argsort(dim=-1)[:, :num_out]
    moved = torch.full_like(itself, num_out - 1).scatter_(1, order,
                                                          new_index)
    return MergePlan(src, dest, order, moved.gather(1, dest))


@register_token_reducer
class ATMEAdaptive(ScheduledReducer):
    """Content-adaptive merges between neighbours (module doc), at ATME's
    token counts (``schedule``) or at a steady rate (``ratio``).

    Args:
        num_layers (int): Blocks of the ViT.
        schedule (str | Sequence, optional): An ATME schedule (preset name
            or entries ``(block, direction, ratio)``, :class:`~.atme.ATME`).
            After the attention of ``block``, the tokens merge down to the
            count ATME's grid would hold there; the direction and ratio set
            that count only: horizontal and vertical neighbour pairs
            compete alike. ``'deit-s'`` if neither this nor ``ratio`` is
            given.
        ratio (float, optional): Instead of a schedule, merge ``ratio`` of
            each image's patch tokens entering every block of ``blocks``
            (rounded half up, as :class:`~.tome.ToMe`'s ``ratio``): many
            gentle steps instead of ATME's few halvings, so the late blocks
            keep more tokens at the same FLOPs.
        blocks (Sequence[int], optional): With ``ratio``, the blocks that
            merge; all by default.
        embed_dims (int, optional): Token width (unused: no weights).
    """
    #: ``for_flops(knob='ratio')`` meets a target with a steady rate;
    #: without a knob it takes an ATME schedule
    flops_knobs = dict(ratio=('float', 0., 0.9))

    def __init__(self,
                 num_layers: int,
                 schedule: Union[str, Sequence, None] = None,
                 ratio: Optional[float] = None,
                 blocks: Optional[Sequence[int]] = None,
                 embed_dims: Optional[int] = None):
        super().__init__(num_layers, embed_dims)
        if ratio is None:
            if blocks is not None:
                raise ValueError('ATMEAdaptive: blocks go with ratio; a '
                                 'schedule names its own blocks')
            self.ratio = None
            self.schedule = parse_schedule(
                'deit-s' if schedule is None else schedule, num_layers)
            return
        if schedule is not None:
            raise ValueError('ATMEAdaptive: set schedule or ratio, not both')
        if isinstance(ratio, bool) or not isinstance(
                ratio, (int, float)) or not 0 <= ratio < 1:
            raise ValueError(f'ATMEAdaptive: ratio={ratio!r} is outside '
                             '[0, 1)')
        blocks = tuple(range(num_layers)) if blocks is None else tuple(
            sorted(blocks))
        if len(set(blocks)) != len(blocks) or any(
                not 0 <= b < num_layers for b in blocks):
            raise ValueError(f'ATMEAdaptive: blocks {list(blocks)} must be '
                             f'distinct indices in [0, {num_layers - 1}]')
        self.ratio = float(ratio)
        # direction and ratio of a schedule entry are not read in this mode
        self.schedule = {b: ('h', self.ratio) for b in blocks}

    @classmethod
    def for_flops(cls, target: float, grid: Tuple[int, int],
                  num_layers: int, embed_dims: int, mlp_ratio: float = 4.,
                  knob: Optional[str] = None,
                  max_points: Optional[int] = None, **settings) -> Dict:
        """An ATME schedule (``max_points`` caps its merging blocks) or,
        with ``knob='ratio'``, the steady rate closest to ``target``."""
        if knob is None:
            return super().for_flops(target, grid, num_layers, embed_dims,
                                     mlp_ratio, max_points, **settings)
        if max_points is not None:
            raise ValueError('ATMEAdaptive: max_points caps a schedule; '
                             'with ratio, set blocks')
        # the knob search of TokenReducer, past ScheduledReducer's
        return super(ScheduledReducer, cls).for_flops(
            target, grid, num_layers, embed_dims, mlp_ratio, knob,
            **settings)

    def merges(self, num_tokens: int) -> int:
        """With ``ratio``: tokens one step merges away from
        ``num_tokens`` (at least one token stays)."""
        return min(int(self.ratio * num_tokens + 0.5), num_tokens - 1)

    def token_counts(self, grid: Tuple[int, int]) -> List[int]:
        if self.ratio is None:
            return super().token_counts(grid)
        return steady_counts(grid[0] * grid[1], self.num_layers,
                             set(self.schedule), self.merges)

    def settings(self) -> Dict:
        if self.ratio is not None:
            return dict(ratio=self.ratio, blocks=sorted(self.schedule))
        return dict(schedule=[list(step) for step in self.entries()])

    def extra_repr(self) -> str:
        if self.ratio is not None:
            return f'ratio={self.ratio:g}, blocks={sorted(self.schedule)}'
        return 'schedule=[{}]'.format(', '.join(
            f'{b}{d}{r:g}' for b, d, r in self.entries()))

    def _shapes(self, block_index: int, state: TokenState, num_tokens: int
                ) -> Tuple[Sequence[Tuple[int, int]], List[Tuple[int, int]]]:
        """Per image, the virtual shape of its content before and after
        this step (host ints): ATME's grid, or with ``ratio`` a ``(1, n)``
        line holding its count."""
        if state.valid_shape is not None:
            before = state.valid_shape
        elif state.shape is not None:
            before = [state.shape]
        elif self.ratio is not None:
            before = [(1, num_tokens)]
        else:  # unpadded, off the grid: replay the schedule
            shapes = grid_shapes(
                self.entries(), tuple(int(n) for n in state.grid_size),
                self.num_layers)
            before = [shapes[block_index]]
        # host ints, also where a tracer hands out shapes as tensors
        before = [(int(h), int(w)) for h, w in before]
        if self.ratio is not None:
            return before, [(1, h * w - self.merges(h * w))
                            for h, w in before]
        direction, ratio = self.schedule[block_index]
        after = [(h - num_merges(ratio, h), w) if direction == 'v' else
                 (h, w - num_merges(ratio, w)) for h, w in before]
        return before, after

    def forward(self, block_index: int, x: Tensor, attn: AttentionInfo,
                state: TokenState,
                num_prefix: int) -> Tuple[Tensor, TokenState]:
        """Merge the patch tokens of ``x (B, P + N, C)`` into
        ``(B, P + N2, C)``, the staying tokens in their order; see
        :class:`TokenReducer`."""
        P = num_prefix
        B, T, C = x.shape
        N = T - P
        before, after = self._shapes(block_index, state, N)
        counts = [h * w for h, w in after]
        merges = [h * w - n for (h, w), n in zip(before, counts)]
        if len(merges) == 1:
            merges, counts = merges * B, counts * B
        padded = state.valid_shape is not None
        if max(merges) == 0:
            return x, state
        num_out = max(counts) if padded else counts[0]
        device = x.device
        with torch.no_grad():
            metric = attn.k[:, :, P:].mean(1)
            metric = metric / metric.norm(dim=-1, keepdim=True).clamp_min(
                1e-12)
            score, target = best_candidates(metric, state)
            pad = state.padding_mask()
            if pad is not None:
                score = score.masked_fill(pad, float('-inf'))
            plan = plan_merges(score, target, merges, num_out, pad)

        # one selection builds the output (prefix, then the new order);
        # each merging token then adds size / (its group's size) of its
        # difference to its group's token, in place: exact for identical
        # tokens, and a group's token is the size-weighted mean
        flat = x.reshape(B * T, C)
        rows = plan.order + row_start(B, T, P, device)
        if P:
            rows = torch.cat([prefix_rows(B, T, P, device), rows], 1)
        out = flat.index_select(0, rows.view(-1))
        size = shape_cached(('atme_adaptive_ones', B, N, x.dtype, device),
                            lambda: x.new_ones(B, N)) \
            if state.size is None else state.size
        if padded:
            # padding holds no patch: where an image's tokens fill the
            # output, its padding lands on a content token and must not
            # add to that token's size (proportional attention reads it)
            size = size.masked_fill(pad, 0.)
        dest = plan.moved.gather(1, plan.src)  # (B, R) new index
        new_size = size.new_zeros(B, num_out).scatter_add_(1, plan.moved,
                                                           size)
        if padded:  # padding slots size 1, as before the step
            new_size = new_size.masked_fill(
                count_padding(counts, num_out, device), 1.)
        weight = new_size.gather(1, dest)
        weight = weight.reciprocal() if state.size is None else \
            size.gather(1, plan.src) / weight
        if padded:  # a repeated staying token merges into itself: no-op
            weight = torch.where(plan.dest.gather(1, plan.src) != plan.src,
                                 weight, 0.)
        dest_rows = (dest + row_start(B, P + num_out, P, device)).view(-1)
        delta = flat.index_select(0, flat_index(plan.src, T, P)) \
            - out.index_select(0, dest_rows)
        if weight.dtype != x.dtype:
            weight = weight.to(x.dtype)
        out.index_add_(0, dest_rows, delta * weight.view(-1, 1))
        source = plan.moved if state.source is None else plan.moved.gather(
            1, state.source)
        return out.view(B, P + num_out, C), TokenState(
            grid_size=state.grid_size,
            shape=None,
            size=new_size,
            source=source,
            valid_shape=tuple(after) if padded else None,
            device=state.device)
