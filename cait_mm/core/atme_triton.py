"""ATME's merge of an unpadded grid in two Triton kernels (the GPU's eager
path; :func:`~.atme.merge_grid` stays the reference and the CPU path).

In eager mode on a GPU the reference merge is about 40 small operators, each
a host dispatch and most a kernel launch, on tensors of a few thousand
elements: at batch 64 the host, not the GPU, sets the pace
(docs/results/benchmarks.md). Here one program per line of the grid
computes its pairs' key similarities, ranks them, and writes where every
token goes (``plan``); then one kernel writes the new sequence, each merged
pair's size-weighted mean included (``apply``). With the source map's
``gather`` that is three launches per merge.

Semantics are the reference's: the same pairs (the ``total`` most similar of
each line, ties to the lower index as a stable descending sort gives), the
same sizes and source map, and the means as ``torch.lerp`` computes them.
The similarities are accumulated in fp32 in another order than the
reference's, so pairs whose similarities differ by float rounding only may
rank the other way (exact ties, as in flat image regions, do not).

The op is registered with ``torch.library`` (``cait_mm::atme_merge``), with
a fake implementation for ``torch.compile`` and a backward for training.
It runs on CUDA tensors; with ``TRITON_INTERPRET=1`` set before Triton is
imported, Triton's interpreter runs the same kernels on CPU tensors, which
checks their logic (the tests do) but is slow: the CPU's fast path is the
reference.
"""
import functools
from typing import Optional, Tuple

import torch
from torch import Tensor

from .token_state import TokenState

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only torch build ships without Triton
    triton = None


def available() -> bool:
    """Whether Triton can be imported."""
    return triton is not None


def _pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


if triton is not None:

    def _plan(k_ptr, size_ptr, moved_ptr, first_ptr, second_ptr, weight_ptr,
              new_size_ptr, skb, skh, skt, skd, num_heads, head_dim, W, L, M,
              num_pairs, total, num_prefix, HW, new_numel,
              VERTICAL: tl.constexpr, LINE_MODE: tl.constexpr,
              HAS_SIZE: tl.constexpr, BLOCK_P: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
        """One program per (image, line): rank the line's pairs and write
        where each of its tokens goes."""
        b = tl.program_id(0).to(tl.int64)
        line = tl.program_id(1)
        j = tl.arange(0, BLOCK_P)
        pair_ok = j < num_pairs
        d = tl.arange(0, BLOCK_D)
        mask = pair_ok[:, None] & (d < head_dim)[None, :]
        # token step between a pair's members, in the flattened grid
        step = W if VERTICAL else 1

        # similarity of each pair: cosine of the keys summed over heads (and
        # over lines in line mode), the reference's normalise-then-multiply
        sim = tl.zeros([BLOCK_P], dtype=tl.float32)
        lines = L if LINE_MODE else 1
        for i in range(lines):
            li = i if LINE_MODE else line
            even = (2 * j) * W + li if VERTICAL else li * W + 2 * j
            offs = (num_prefix + even)[:, None] * skt + d[None, :] * skd
            for h in range(num_heads):
                base = k_ptr + b * skb + h * skh
                ke = tl.load(base + offs, mask=mask, other=0.).to(tl.float32)
                ko = tl.load(base + offs + step * skt, mask=mask,
                             other=0.).to(tl.float32)
                ne = tl.maximum(tl.sqrt(tl.sum(ke * ke, 1)), 1e-6)
                no = tl.maximum(tl.sqrt(tl.sum(ko * ko, 1)), 1e-6)
                sim += tl.sum((ke / ne[:, None]) * (ko / no[:, None]), 1)

        # rank of each pair in a stable descending sort: the pairs that are
        # more similar, or as similar and earlier; the first ``total`` merge
        sim = tl.where(pair_ok, sim, float('-inf'))
        ahead = ((sim[None, :] > sim[:, None]) |
                 ((sim[None, :] == sim[:, None]) &
                  (j[None, :] < j[:, None]))) & pair_ok[None, :]
        rank = tl.sum(ahead.to(tl.int32), 1)
        merged = (rank < total) & pair_ok

        # tokens along the line: m's pair merges (m even), m merges into its
        # neighbour (m odd); its new position is m minus the merges up to it
        m = tl.arange(0, BLOCK_M)
        m_ok = m < M
        hit = merged[None, :].to(tl.int32)
        merges = tl.sum(hit * (2 * j[None, :] == m[:, None]).to(tl.int32),
                        1) > 0
        dropped = tl.sum(hit * (2 * j[None, :] + 1 == m[:, None]).to(
            tl.int32), 1) > 0
        newpos = m - tl.sum(hit * (2 * j[None, :] + 1 <= m[:, None]).to(
            tl.int32), 1)
        old = m * W + line if VERTICAL else line * W + m
        new = newpos * W + line if VERTICAL else line * (W - total) + newpos
        tl.store(moved_ptr + b * HW + old, new.to(tl.int64), mask=m_ok)

        # kept tokens: the source rows of the new token, its weight, size
        kept = m_ok & (dropped == 0)
        partner = tl.where(merges, old + step, old)
        if HAS_SIZE:
            size = tl.load(size_ptr + b * HW + old, mask=kept, other=1.)
            size = size.to(tl.float32)
            absorbed = tl.load(size_ptr + b * HW + partner, mask=kept & merges,
                               other=0.).to(tl.float32)
            new_size = size + absorbed
            weight = absorbed / new_size
        else:
            new_size = 1. + merges.to(tl.float32)
            weight = 0.5 * merges.to(tl.float32)
        at = b * new_numel + new
        tl.store(first_ptr + at, old.to(tl.int32), mask=kept)
        tl.store(second_ptr + at, partner.to(tl.int32), mask=kept)
        tl.store(weight_ptr + at, weight, mask=kept)
        tl.store(new_size_ptr + at,
                 new_size.to(new_size_ptr.dtype.element_ty), mask=kept)

    def _apply(x_ptr, out_ptr, first_ptr, second_ptr, weight_ptr, sxb, sxt,
               sxc, C, num_prefix, new_numel, BLOCK_R: tl.constexpr,
               BLOCK_C: tl.constexpr):
        """The new sequence: the prefix rows, then each new token's row,
        the lerp of its two source rows (the same row where none merged)."""
        b = tl.program_id(0).to(tl.int64)
        r = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
        c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        rows_ok = r < num_prefix + new_numel
        patch = r >= num_prefix
        at = b * new_numel + r - num_prefix
        pmask = rows_ok & patch
        first = tl.load(first_ptr + at, mask=pmask, other=0).to(tl.int64)
        second = tl.load(second_ptr + at, mask=pmask, other=0).to(tl.int64)
        w = tl.load(weight_ptr + at, mask=pmask, other=0.)[:, None]
        src_first = tl.where(patch, num_prefix + first, r)
        src_second = tl.where(patch, num_prefix + second, r)
        mask = rows_ok[:, None] & (c < C)[None, :]
        base = x_ptr + b * sxb + c[None, :] * sxc
        a = tl.load(base + src_first[:, None] * sxt, mask=mask,
                    other=0.).to(tl.float32)
        z = tl.load(base + src_second[:, None] * sxt, mask=mask,
                    other=0.).to(tl.float32)
        # torch.lerp's two branches, for the same rounding
        out = tl.where(w < 0.5, a + w * (z - a), z - (z - a) * (1 - w))
        tl.store(out_ptr + (b * (num_prefix + new_numel) + r[:, None]) * C +
                 c[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)

    @functools.lru_cache(maxsize=None)
    def _kernels():
        """The two kernels (compiled on first use per specialisation)."""
        return triton.jit(_plan), triton.jit(_apply)


def _new_shape(grid: Tuple[int, int], vertical: bool,
               total: int) -> Tuple[int, int]:
    H, W = grid
    return (H - total, W) if vertical else (H, W - total)


@torch.library.custom_op('cait_mm::atme_merge', mutates_args=())
def atme_merge(x: Tensor, keys: Tensor, size: Optional[Tensor], H: int,
               W: int, num_prefix: int, vertical: bool, total: int,
               line_mode: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor,
                                         Tensor, Tensor]:
    """One ATME merge of an unpadded grid (:func:`~.atme.merge_grid`'s
    semantics; ``x`` is not overwritten).

    Args:
        x (Tensor): ``(B, P + H*W, C)``.
        keys (Tensor): ``(B, h, P + H*W, d)``.
        size (Tensor, optional): ``(B, H*W)`` token sizes; none: all 1.
        H (int): Grid rows (two ints, not a list: ``torch.jit.trace``,
            which FLOPs counting uses, records no list argument of a
            custom op).
        W (int): Grid columns.
        num_prefix (int): ``P``.
        vertical (bool): Merge along columns.
        total (int): Pairs merged per line.
        line_mode (bool): The same pairs in every line.

    Returns:
        tuple: the new tokens ``(B, P + N', C)``, sizes ``(B, N')`` (x's
        dtype), the old-to-new index map ``(B, H*W)`` long, and, for the
        backward, each new token's two source tokens ``(B, N')`` int32 and
        the weight of the second ``(B, N')`` fp32.
    """
    if triton is None:
        raise RuntimeError('ATME kernel="triton" needs Triton (pip install '
                           'triton, or a CUDA build of torch)')
    B, T, C = x.shape
    h, d = keys.shape[1], keys.shape[3]
    new_h, new_w = _new_shape((H, W), vertical, total)
    N = new_h * new_w
    L, M = (W, H) if vertical else (H, W)
    dev = x.device
    if dev.type != 'cuda' and not triton.knobs.runtime.interpret:
        raise RuntimeError(
            f'ATME kernel="triton" runs on CUDA tensors, got {dev.type} '
            '(kernel="torch" is the fast path elsewhere; TRITON_INTERPRET=1 '
            'runs the kernels on the CPU for checking, slowly)')
    moved = torch.empty(B, H * W, dtype=torch.long, device=dev)
    first = torch.empty(B, N, dtype=torch.int32, device=dev)
    second = torch.empty(B, N, dtype=torch.int32, device=dev)
    weight = torch.empty(B, N, dtype=torch.float32, device=dev)
    new_size = torch.empty(B, N, dtype=x.dtype, device=dev)
    out = torch.empty(B, num_prefix + N, C, dtype=x.dtype, device=dev)
    plan, apply = _kernels()
    size_arg = size.contiguous() if size is not None else new_size
    plan[(B, L)](
        keys, size_arg, moved, first, second, weight, new_size,
        *keys.stride(), h, d, W, L, M, M // 2, total, num_prefix, H * W, N,
        VERTICAL=vertical, LINE_MODE=line_mode, HAS_SIZE=size is not None,
        BLOCK_P=_pow2(max(M // 2, 1)), BLOCK_M=_pow2(M), BLOCK_D=_pow2(d))
    block_r, block_c = 16, min(_pow2(C), 128)
    apply[(B, triton.cdiv(num_prefix + N, block_r), triton.cdiv(C, block_c))](
        x, out, first, second, weight, *x.stride(), C, num_prefix, N,
        BLOCK_R=block_r, BLOCK_C=block_c)
    return out, new_size, moved, first, second, weight


@atme_merge.register_fake
def _(x, keys, size, H, W, num_prefix, vertical, total, line_mode):
    B, _, C = x.shape
    new_h, new_w = _new_shape((H, W), vertical, total)
    N = new_h * new_w
    return (x.new_empty(B, num_prefix + N, C), x.new_empty(B, N),
            x.new_empty(B, H * W, dtype=torch.long),
            x.new_empty(B, N, dtype=torch.int32),
            x.new_empty(B, N, dtype=torch.int32),
            x.new_empty(B, N, dtype=torch.float32))


def _setup_context(ctx, inputs, output):
    x, num_prefix = inputs[0], inputs[5]
    _, _, _, first, second, weight = output
    ctx.save_for_backward(first, second, weight)
    ctx.x_shape, ctx.num_prefix = x.shape, num_prefix
    ctx.mark_non_differentiable(*output[1:])


def _backward(ctx, grad, *_):
    """``out = (1 - w) x[first] + w x[second]`` row by row, the prefix
    copied: the gradient goes back to both rows in those proportions."""
    first, second, weight = ctx.saved_tensors
    B, T, C = ctx.x_shape
    P = ctx.num_prefix
    gx = grad.new_zeros(B, T, C)
    gx[:, :P] = grad[:, :P]
    g = grad[:, P:]
    w = weight.to(g.dtype).unsqueeze(-1)
    rows = torch.arange(B, device=g.device)[:, None] * T + P
    flat = gx.view(B * T, C)
    flat.index_add_(0, (rows + first).view(-1), (g * (1 - w)).reshape(-1, C))
    flat.index_add_(0, (rows + second).view(-1), (g * w).reshape(-1, C))
    return (gx, ) + (None, ) * 8


atme_merge.register_autograd(_backward, setup_context=_setup_context)


def merge_grid_triton(x: Tensor, keys: Tensor, state: TokenState,
                      num_prefix: int, vertical: bool, total: int,
                      line_mode: bool) -> Tuple[Tensor, TokenState]:
    """:func:`~.atme.merge_grid` through :func:`atme_merge` (same
    arguments, no index tables; ``x`` is left as it was).

    Returns:
        tuple: ``(B, P + H'*W', C)`` and the new
        :class:`~.token_state.TokenState`.
    """
    out, size, moved, _, _, _ = atme_merge(x, keys, state.size,
                                           *state.shape, num_prefix,
                                           vertical, total, line_mode)
    return out, TokenState(
        grid_size=state.grid_size,
        shape=_new_shape(state.shape, vertical, total),
        size=size,
        source=moved if state.source is None else moved.gather(
            1, state.source))
