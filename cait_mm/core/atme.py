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

A ratio of 1 merges every pair of every line, a size-weighted 2x mean
along one axis whose tables depend on shapes only (:func:`merge_whole_lines`).

The merges here are index arithmetic over the whole batch, written for
speed; :mod:`.atme_reference` states the same merge line by line, and the
tests hold this module and :mod:`.atme_triton` to it.
"""
from typing import (Dict, List, NamedTuple, Optional, Sequence, Set, Tuple,
                    Union)

import torch
from torch import Tensor

from . import atme_triton
from .atme_schedules import (grid_shapes, num_merges, parse_schedule,
                             schedule_for_flops)
from .batch_rows import flat_index, prefix_rows, row_start, shape_cached
from .token_reducer import TokenReducer, register_token_reducer
from .token_state import TokenState
from .vit_layers import AttentionInfo

GRANULARITIES = ('token', 'line')
KERNELS = ('torch', 'triton')


def _fp32_keys(keys: Tensor) -> Tensor:
    """Half-precision keys (autocast) in fp32, others as they are: a
    similarity computed in fp16 or bf16 rounds to a few hundred values, so
    the merge paths, which sum in different orders, would rank pairs
    differently (an image would merge otherwise alone than in a padded
    batch); the Triton kernels accumulate in fp32 too."""
    if keys.dtype in (torch.float16, torch.bfloat16):
        return keys.float()
    return keys


def pair_similarity(keys: Tensor, num_prefix: int, grid: Tuple[int, int],
                    vertical: bool) -> Tensor:
    """Cosine similarity of the keys of the candidate pairs, averaged over
    heads.

    Args:
        keys (Tensor): ``(B, h, P + H*W, d)``, the prefix tokens first.
        num_prefix (int): ``P``.
        grid (tuple): ``(H, W)``.
        vertical (bool): Pairs along columns (rows ``2j, 2j+1``) instead of
            along rows.

    Returns:
        Tensor: ``(B, L, M // 2)``: for each of the ``L`` lines (rows, or
        columns if ``vertical``) of ``M`` tokens, the similarity of its
        pairs ``(2j, 2j+1)``.
    """
    B, h, _, d = keys.shape
    H, W = grid
    # dot products and norms of the raw keys: no normalised copy of them
    k = _fp32_keys(keys[:, :, num_prefix:].reshape(B, h, H, W, d))
    norm = k.norm(dim=-1).clamp_min(1e-6)  # (B, h, H, W)
    if vertical:
        P = H // 2
        dot = (k[:, :, 0:2 * P:2] * k[:, :, 1:2 * P:2]).sum(-1)
        cos = dot / (norm[:, :, 0:2 * P:2] * norm[:, :, 1:2 * P:2])
        return cos.mean(1).transpose(1, 2)  # (B, W, P)
    P = W // 2
    dot = (k[:, :, :, 0:2 * P:2] * k[:, :, :, 1:2 * P:2]).sum(-1)
    cos = dot / (norm[..., 0:2 * P:2] * norm[..., 1:2 * P:2])
    return cos.mean(1)


class LinePlan(NamedTuple):
    """Where every token of every line of a padded batch goes; small
    integer tensors only.

    Attributes:
        pairs (Tensor): ``(B, L, R)``, the pair index ``j`` of the pairs
            ``(2j, 2j+1)`` that may merge, ``R = total``.
        merged_pair (Tensor): ``(B, 1, R)`` bool, which of those really
            merge.
        newpos (Tensor): ``(B, L, M)``, the position in its line that holds
            each old token after the merge (an odd token merged into its
            neighbour shares the neighbour's).
        index (Tensor): ``(B, L, M - R)``, the old position of each new
            token.
        merged (tuple): Per image, the content pairs merged per line (host
            ints).
        total (int): ``R``, the tokens every line of the batch loses.
    """
    pairs: Tensor
    merged_pair: Tensor
    newpos: Tensor
    index: Tensor
    merged: Tuple[int, ...]
    total: int


def _on_device(values: Sequence[int], device: torch.device) -> Tensor:
    """``torch.tensor(values)`` on ``device``, once per values and device
    (a copy from the host in every forward would wait for the device)."""
    values = tuple(values)
    return shape_cached(('host_ints', values, device),
                        lambda: torch.tensor(values, device=device))


def plan_lines(sim: Tensor, ratio: float, length: int, line_mode: bool,
               valid_len: Sequence[int],
               valid_lines: Sequence[int]) -> LinePlan:
    """Choose the pairs to merge in every line of a padded batch and where
    tokens go.

    Counts come from the content sizes, host ints: nothing is read back
    from the device.

    Args:
        sim (Tensor): ``(B, L, P)`` pair similarities, ``P = length // 2``.
        ratio (float): Fraction of the candidate pairs merged per line.
        length (int): Tokens per line ``M``.
        line_mode (bool): The same pairs in every line, chosen by similarity
            averaged along the line.
        valid_len (Sequence[int]): Per image, the content length along a
            line.
        valid_lines (Sequence[int]): Per image, the content lines.
    """
    B, L, P = sim.shape
    M = length
    device = sim.device
    counts = tuple(num_merges(ratio, n) for n in valid_len)
    total = max(counts, default=0)
    merged = _on_device(counts, device)
    lengths = _on_device(valid_len, device)
    if line_mode:
        lines = _on_device(valid_lines, device)
        line_ok = torch.arange(L, device=device)[None] < lines[:, None]
        sim = (sim * line_ok[..., None]).sum(1, keepdim=True) \
            / lines[:, None, None]
    pair_ok = torch.arange(P, device=device)[None] < (lengths // 2)[:, None]
    sim = sim.masked_fill(~pair_ok[:, None], float('-inf'))
    pairs = sim.argsort(dim=-1, descending=True,
                        stable=True)[..., :total].expand(B, L, total)
    merged_pair = torch.arange(total, device=device)[None, None] < \
        merged[:, None, None]

    # A token stays unless it is the odd half of a merged pair, or one of
    # the padding tokens dropped so that every line loses ``total``.
    drop = torch.zeros(B, L, M, dtype=torch.bool, device=device)
    odd = 2 * pairs + 1
    drop.scatter_(-1, odd, merged_pair.expand_as(odd))
    drop_pad = total - merged  # (B,), fits in the padding (module doc)
    drop |= torch.arange(M, device=device)[None, None] >= (
        M - drop_pad)[:, None, None]
    keep = ~drop
    newpos = keep.cumsum(-1) - 1
    index = drop.to(torch.uint8).argsort(dim=-1, stable=True)[..., :M - total]
    return LinePlan(pairs, merged_pair, newpos, index, counts, total)


class MergeTables(NamedTuple):
    """Index tables of one merge step that depend on shapes only, so
    :class:`ATME` builds them once per shape (:func:`merge_tables`).

    Attributes:
        rows (Tensor): ``(B, H*W)`` long, the row of each patch token in the
            batch flattened to ``(B * T, C)``, ``T = P + H*W``.
        prefix_rows (Tensor): ``(B, P)`` long, the rows of the prefix
            tokens.
        new_index (Tensor): ``(1, H, W)`` long, the index of each token in
            the merged grid if nothing before it in its line merged:
            ``h * W' + w`` (rows lose tokens) or ``h * W + w`` (columns do).
    """
    rows: Tensor
    prefix_rows: Tensor
    new_index: Tensor


def merge_tables(batch: int, grid: Tuple[int, int], num_prefix: int,
                 vertical: bool, total: int,
                 device: torch.device) -> MergeTables:
    """The :class:`MergeTables` of a merge of ``total`` tokens per line of
    an unpadded ``grid`` along columns (``vertical``) or rows (built once
    per shape: :func:`~.batch_rows.shape_cached`)."""
    H, W = grid
    T = num_prefix + H * W
    rows = row_start(batch, T, num_prefix, device) + torch.arange(
        H * W, device=device)
    width = W if vertical else W - total
    new_index = (torch.arange(H, device=device)[:, None] * width +
                 torch.arange(W, device=device))[None]
    return MergeTables(rows, prefix_rows(batch, T, num_prefix, device),
                       new_index)


def _pairs_along(t: Tensor, dim: int, num_pairs: int, odd: bool) -> Tensor:
    """A view of the even (or ``odd``) members of the first ``num_pairs``
    pairs ``(2j, 2j+1)`` along ``dim``."""
    return t[(slice(None), ) * dim + (slice(int(odd), 2 * num_pairs, 2), )]


def _halves(t: Tensor, dim: int, num_pairs: int) -> Tuple[Tensor, Tensor]:
    """Views of the even and odd members of the first ``num_pairs`` pairs
    along ``dim``."""
    return (_pairs_along(t, dim, num_pairs, False),
            _pairs_along(t, dim, num_pairs, True))


def merge_grid(x: Tensor, keys: Tensor, state: TokenState, num_prefix: int,
               vertical: bool, total: int, line_mode: bool,
               tables: MergeTables) -> Tuple[Tensor, TokenState]:
    """One ATME step on an unpadded batch: ``total`` tokens of every line
    merge into their even neighbours.

    Counts come from the shapes (no host sync) and index tables from
    ``tables``; the tokens are written once (each pair's mean, in place on
    its even token in ``x``) and moved once (one ``index_select`` builds the
    new sequence, prefix included).

    Args:
        x (Tensor): ``(B, T, C)``, ``T = P + H*W``; overwritten.
        keys (Tensor): ``(B, h, T, d)`` attention keys.
        state (TokenState): State of the ``(H, W)`` grid, unpadded.
        num_prefix (int): ``P``.
        vertical (bool): Merge along columns (pairs of rows).
        total (int): Pairs merged per line.
        line_mode (bool): The same pairs in every line.
        tables (MergeTables): :func:`merge_tables` of these shapes.

    Returns:
        tuple: ``(B, P + H'*W', C)`` and the new state.
    """
    B, T, C = x.shape
    H, W = state.shape
    dim = 1 if vertical else 2  # the axis along lines in (B, H, W)
    num_pairs = (H if vertical else W) // 2
    shape = (H - total, W) if vertical else (H, W - total)

    # cosine similarity of each pair's keys; summed, not averaged, over
    # heads: only its order matters
    k = _fp32_keys(keys[:, :, num_prefix:].unflatten(2, (H, W)))
    k_even, k_odd = _halves(
        k / k.norm(dim=-1, keepdim=True).clamp_min(1e-6), dim + 1, num_pairs)
    sim = (k_even * k_odd).sum((1, 4))  # (B, H/2, W) or (B, H, W/2)
    if line_mode:
        sim = sim.sum(3 - dim, keepdim=True)
    pairs = sim.argsort(dim=dim, descending=True, stable=True).narrow(
        dim, 0, total)

    # 1 on the odd token of every merged pair, which lands on its even
    # neighbour: a token's new index is its index in an unmerged line
    # minus the merges up to it (in line mode one line, broadcast)
    lines = 1 if line_mode else (W if vertical else H)
    drop = x.new_zeros((B, H, lines) if vertical else (B, lines, W))
    drop_odd = _pairs_along(drop, dim, num_pairs, True)
    drop_odd.scatter_(dim, pairs, 1.)
    moved = torch.sub(tables.new_index, drop.cumsum(dim, dtype=torch.long),
                      alpha=W if vertical else 1).view(B, -1)

    # sizes and the pairs' size-weighted means
    if state.size is None:
        weight = drop_odd * .5
        new_size = x.new_ones(B, shape[0] * shape[1]).scatter_add_(
            1, moved, (drop.expand(B, H, W).reshape(B, -1)
                       if line_mode else drop.view(B, -1)))
    else:
        size = state.size.view(B, H, W)
        size_even, size_odd = _halves(size, dim, num_pairs)
        absorbed = size_odd * drop_odd
        weight = absorbed / (size_even + absorbed)
        new_size = x.new_zeros(B, shape[0] * shape[1]).scatter_add_(
            1, moved, state.size)
    x_even, x_odd = _halves(x[:, num_prefix:].unflatten(1, (H, W)), dim,
                            num_pairs)
    x_even.lerp_(x_odd, weight.unsqueeze(-1))

    # each new token's row in x: the first of the tokens that land on it
    rows = tables.rows.new_empty(B, new_size.shape[1]).scatter_reduce_(
        1, moved, tables.rows, 'amin', include_self=False)
    if num_prefix:
        rows = torch.cat([tables.prefix_rows, rows], 1)
    out = x.reshape(B * T, C).index_select(0, rows.view(-1))
    return out.view(B, rows.shape[1], C), _merged_state(
        state, shape, new_size, moved)


def _merged_state(state: TokenState, shape: Tuple[int, int], size: Tensor,
                  moved: Tensor) -> TokenState:
    """The state of an unpadded grid after a merge that took old token
    ``i`` to ``moved[:, i]`` (``(B, H*W)``), now of ``shape``."""
    return TokenState(
        grid_size=state.grid_size,
        shape=shape,
        size=size,
        source=moved if state.source is None else moved.gather(
            1, state.source))


class PoolTables(NamedTuple):
    """Index tables of a whole-line merge (every pair of every line
    merges): with no choice left, all of it depends on shapes only
    (:func:`pool_tables`).

    Attributes:
        rows (Tensor): ``(B, P + H'*W')`` long, the row in the batch
            flattened to ``(B * T, C)`` of each new token: the prefix, then
            each pair's even token (a line's last token if it has no pair).
        moved (Tensor): ``(1, H*W)`` long, the new index of each old token.
        size (Tensor): ``(1, H'*W')``, the new sizes while all old ones are
            1: 2, or 1 for the last token of an odd line.
        half (Tensor): ``(1, )``, 0.5: the pairs' weight while all sizes
            are 1.
    """
    rows: Tensor
    moved: Tensor
    size: Tensor
    half: Tensor


def pool_tables(batch: int, grid: Tuple[int, int], num_prefix: int,
                vertical: bool, dtype: torch.dtype,
                device: torch.device) -> PoolTables:
    """The :class:`PoolTables` of a whole-line merge of ``grid`` along
    columns (``vertical``) or rows, in the pair order of
    :func:`merge_grid`: pair ``(2j, 2j+1)`` becomes token ``j``."""
    H, W = grid
    T = num_prefix + H * W
    h = torch.arange(H, device=device)[:, None]
    w = torch.arange(W, device=device)[None]
    if vertical:
        H2, W2 = (H + 1) // 2, W
        moved = (h // 2) * W + w
        first = (2 * h[:H2]) * W + w
    else:
        H2, W2 = H, (W + 1) // 2
        moved = h * W2 + w // 2
        first = h * W + 2 * w[:, :W2]
    rows = row_start(batch, T, num_prefix, device) + first.view(1, -1)
    if num_prefix:
        rows = torch.cat([prefix_rows(batch, T, num_prefix, device), rows],
                         1)
    moved = moved.view(1, -1)
    size = torch.zeros(1, H2 * W2, dtype=dtype, device=device).scatter_add_(
        1, moved, torch.ones(1, H * W, dtype=dtype, device=device))
    return PoolTables(rows, moved, size,
                      torch.full((1, ), .5, dtype=dtype, device=device))


def merge_whole_lines(x: Tensor, state: TokenState, num_prefix: int,
                      vertical: bool,
                      tables: PoolTables) -> Tuple[Tensor, TokenState]:
    """:func:`merge_grid` when every pair of every line merges (a ratio of
    1): a size-weighted mean of the pairs ``(2j, 2j+1)``, the same result
    in a handful of operators, since no pair is chosen and every table
    depends on shapes only (no similarity, sort or scatter).

    Args:
        x (Tensor): ``(B, P + H*W, C)``; overwritten.
        state (TokenState): State of the ``(H, W)`` grid, unpadded.
        num_prefix (int): ``P``.
        vertical (bool): Merge along columns (pairs of rows).
        tables (PoolTables): :func:`pool_tables` of these shapes.

    Returns:
        tuple: ``(B, P + H'*W', C)``, ``H' = ceil(H / 2)`` if ``vertical``
        (``W'`` otherwise), and the new state.
    """
    B, T, C = x.shape
    H, W = state.shape
    dim = 1 if vertical else 2
    length = H if vertical else W
    num_pairs = length // 2
    shape = ((H + 1) // 2, W) if vertical else (H, (W + 1) // 2)
    x_even, x_odd = _halves(x[:, num_prefix:].unflatten(1, (H, W)), dim,
                            num_pairs)
    if state.size is None:
        # a tensor weight, as in the general path: the same rounding
        x_even.lerp_(x_odd, tables.half)
        new_size = tables.size.expand(B, -1)
    else:
        size_even, size_odd = _halves(state.size.view(B, H, W), dim,
                                      num_pairs)
        pair_size = size_even + size_odd
        x_even.lerp_(x_odd, (size_odd / pair_size).unsqueeze(-1))
        if length % 2:  # an odd line's last token stays
            new_size = state.size.new_zeros(B, shape[0] * shape[1])
            new_size.scatter_add_(1, tables.moved.expand(B, -1), state.size)
        else:
            new_size = pair_size.view(B, -1)
    out = x.reshape(B * T, C).index_select(0, tables.rows.view(-1))
    return out.view(B, -1, C), _merged_state(
        state, shape, new_size, tables.moved.expand(B, -1))


class ScheduledReducer(TokenReducer):
    """A reducer whose token counts follow an ATME schedule,
    ``self.schedule`` (block -> ``(direction, ratio)``, set by the
    subclass): :class:`ATME` and :class:`~.atme_adaptive.ATMEAdaptive`."""
    # each image merges inside its own content (both modules' docs)
    supports_padding = True

    schedule: Dict[int, Tuple[str, float]]

    def entries(self) -> List[Tuple[int, str, float]]:
        """The schedule as ``(block, direction, ratio)`` entries."""
        return [(b, d, r) for b, (d, r) in sorted(self.schedule.items())]

    @property
    def blocks(self) -> Set[int]:
        return set(self.schedule)

    def token_counts(self, grid: Tuple[int, int]) -> List[int]:
        return [h * w for h, w in grid_shapes(self.entries(), grid,
                                              self.num_layers)[1:]]

    @classmethod
    def for_flops(cls, target: float, grid: Tuple[int, int],
                  num_layers: int, embed_dims: int, mlp_ratio: float = 4.,
                  max_points: Optional[int] = None, **settings) -> Dict:
        """A schedule whose block FLOPs are at most ``target`` and the
        closest to it (:func:`~.atme_schedules.schedule_for_flops`), with
        at most ``max_points`` merging blocks if given."""
        schedule = schedule_for_flops(target, grid, embed_dims, num_layers,
                                      mlp_ratio, max_points)
        return dict(type=cls.type_name, **settings,
                    schedule=[list(step) for step in schedule])


@register_token_reducer
class ATME(ScheduledReducer):
    """Asymmetric token merging (HTM/VTM) on a per-block schedule.

    Args:
        num_layers (int): Blocks of the ViT.
        embed_dims (int, optional): Token width (unused: ATME has no
            weights).
        schedule (str | Sequence): A preset name (``'deit-t'``,
            ``'deit-s'``, ``'deit-b'``; ``'deit-s-few'`` etc. reach the same
            FLOPs with two merges, see
            :mod:`cait_mm.core.atme_schedules`) or entries
            ``(block, direction, ratio)``: after the attention of ``block``,
            merge along ``'h'`` (rows) or ``'v'`` (columns) ``ratio`` of the
            candidate pairs of every line, rounded half up.
        granularity (str): ``'token'`` (each line picks its own pairs) or
            ``'line'`` (whole column/row pairs, the grid stays separable).
        kernel (str): ``'torch'``, the reference merge in PyTorch
            operators, or ``'triton'``: the same merge in two Triton kernels
            (:mod:`~.atme_triton`, for eager mode on a GPU, where the
            reference's ~40 operators per merge leave the GPU waiting on the
            host). Padded batches always take the reference; a ratio of 1
            (every pair merges: nothing to choose) always takes
            :func:`merge_whole_lines`, 2 to 5 kernels on either kernel.
    """

    runtime_options = ('kernel', )

    def __init__(self,
                 num_layers: int,
                 schedule: Union[str, Sequence],
                 granularity: str = 'token',
                 embed_dims: Optional[int] = None,
                 kernel: str = 'torch'):
        super().__init__(num_layers, embed_dims)
        if granularity not in GRANULARITIES:
            raise ValueError(f'ATME granularity must be one of '
                             f'{GRANULARITIES}, got {granularity!r}')
        if kernel not in KERNELS:
            raise ValueError(f'ATME kernel must be one of {KERNELS}, got '
                             f'{kernel!r}')
        if kernel == 'triton' and not atme_triton.available():
            raise ImportError('ATME kernel="triton" needs Triton, which '
                              'this torch build lacks (pip install triton, '
                              'or use kernel="torch")')
        self.granularity = granularity
        self.kernel = kernel
        self.schedule = parse_schedule(schedule, num_layers)

    def settings(self) -> Dict:
        # not the kernel: how this machine runs the merge is no part of
        # the model (runtime_options)
        return dict(
            schedule=[list(step) for step in self.entries()],
            granularity=self.granularity)

    def extra_repr(self) -> str:
        steps = ', '.join(f'{b}{d}{r:g}' for b, d, r in self.entries())
        return (f'granularity={self.granularity}, kernel={self.kernel}, '
                f'schedule=[{steps}]')

    def forward(self, block_index: int, x: Tensor, attn: AttentionInfo,
                state: TokenState,
                num_prefix: int) -> Tuple[Tensor, TokenState]:
        """Merge the patch tokens of ``x (B, P + H*W, C)`` into
        ``(B, P + H'*W', C)``; see :class:`TokenReducer`.

        ``x`` is consumed: the merged pairs' means are written over the
        rows of their even tokens in place, then one row selection builds
        the new sequence (prefix included).
        """
        direction, ratio = self.schedule[block_index]
        if state.shape is None:
            raise RuntimeError('ATME needs tokens on a grid; another reducer '
                               'already broke it')
        if state.valid_shape is not None:
            return self._merge_padded(direction, ratio, x, attn, state,
                                      num_prefix)
        H, W = state.shape
        vertical = direction == 'v'
        length = H if vertical else W
        total = num_merges(ratio, length)
        if total and total == length // 2:
            key = (x.shape[0], (H, W), num_prefix, vertical, x.dtype,
                   x.device)
            tables = shape_cached(('atme_pool', ) + key,
                                  lambda: pool_tables(*key))
            return merge_whole_lines(x, state, num_prefix, vertical, tables)
        if self.kernel == 'triton':
            return atme_triton.merge_grid_triton(
                x, attn.k, state, num_prefix, vertical, total,
                self.granularity == 'line')
        key = (x.shape[0], (H, W), num_prefix, vertical, total, x.device)
        tables = shape_cached(('atme', ) + key, lambda: merge_tables(*key))
        return merge_grid(x, attn.k, state, num_prefix, vertical, total,
                          self.granularity == 'line', tables)

    def _merge_padded(self, direction: str, ratio: float, x: Tensor,
                      attn: AttentionInfo, state: TokenState,
                      num_prefix: int) -> Tuple[Tensor, TokenState]:
        """The merge of a padded batch: each image merges by its own
        content's length (:func:`plan_lines`), so counts vary per image.

        The merge is index arithmetic on small integer tensors, one row
        selection of the kept tokens (prefix included) and one row copy of
        the merged pairs' size-weighted means: no other copy or transpose
        of the tokens.
        """
        H, W = state.shape
        B, T, C = x.shape
        device = x.device
        vertical = direction == 'v'
        L, M = (W, H) if vertical else (H, W)
        valid = state.valid_shape
        axis, line_axis = (0, 1) if vertical else (1, 0)
        plan = plan_lines(
            pair_similarity(attn.k, num_prefix, (H, W), vertical),
            ratio,
            M,
            line_mode=self.granularity == 'line',
            valid_len=[cell[axis] for cell in valid],
            valid_lines=[cell[line_axis] for cell in valid])
        M2 = M - plan.total
        shape = (M2, W) if vertical else (H, M2)

        # grid index of token m of line l, before (``old``) and after
        lines = torch.arange(L, device=device)[:, None]
        old = torch.arange(M, device=device)[None] * W + lines if vertical \
            else lines * W + torch.arange(M, device=device)[None]
        old = old.expand(B, L, M)

        def new(pos):  # positions along lines -> new grid index
            return pos * W + lines if vertical else lines * M2 + pos

        def grid_order(t):  # (B, L, K) in line order -> grid order
            return (t.transpose(1, 2) if vertical else t).reshape(B, -1)

        # rows of the new sequence: the prefix, then the kept tokens, and
        # one spare row at the end (below)
        src = grid_order(old.gather(2, plan.index))
        prefix = torch.arange(num_prefix, device=device).expand(B, -1)
        rows = flat_index(torch.cat([prefix, src + num_prefix], 1), T)
        flat = x.reshape(B * T, C)
        out = flat.index_select(0, torch.cat([rows, rows[:1]]))

        # each merged pair: even + w * (odd - even), w = size odd / sizes,
        # written over the even token's row (index_copy_: a scatter-add of
        # whole rows is several times slower on CPU); pairs of a padded
        # batch that do not merge write to the spare row
        even_pos = 2 * plan.pairs
        even = old.gather(2, even_pos).reshape(B, -1)
        odd = old.gather(2, even_pos + 1).reshape(B, -1)
        size = state.size if state.size is not None else x.new_ones(
            B, H * W)
        s_even, s_odd = size.gather(1, even), size.gather(1, odd)
        target = new(plan.newpos.gather(2, even_pos)).reshape(B, -1)
        target_rows = flat_index(target + num_prefix, num_prefix + M2 * L)
        merging = plan.merged_pair.expand_as(plan.pairs).reshape(B, -1)
        s_odd = s_odd * merging
        target_rows = torch.where(merging.flatten(), target_rows,
                                  out.shape[0] - 1)
        weight = (s_odd / (s_even + s_odd)).to(x.dtype).reshape(-1, 1)
        even_x = flat.index_select(0, flat_index(even + num_prefix, T))
        odd_x = flat.index_select(0, flat_index(odd + num_prefix, T))
        out.index_copy_(0, target_rows, even_x + weight * (odd_x - even_x))
        out = out[:-1]

        new_size = size.gather(1, src).scatter_add(1, target, s_odd)
        moved = grid_order(new(plan.newpos))  # (B, H*W) old -> new index
        source = moved if state.source is None else moved.gather(
            1, state.source)
        valid = tuple((h - m, w) if vertical else (h, w - m)
                      for (h, w), m in zip(valid, plan.merged))
        return out.view(B, num_prefix + M2 * L, C), TokenState(
            grid_size=state.grid_size,
            shape=shape,
            size=new_size,
            source=source,
            valid_shape=valid,
            device=state.device)
