"""One ATME merge in plain PyTorch, image by image and line by line: the
semantics that the fast paths implement.

:func:`~.atme.merge_grid` (unpadded batches), ``ATME._merge_padded``
(padded batches) and :mod:`~.atme_triton` (the GPU kernels) are written for
speed, as index arithmetic over the whole batch. :func:`merge_reference`
says what they compute, in the order one would do it by hand, and the tests
hold all three to it. It loops in Python and is no part of any forward.

One merge step runs along rows (HTM) or, with ``vertical``, along columns
(VTM: the same with rows and columns swapped). A *line* is a row (a column)
of ``M`` tokens; the grid has ``L`` lines. Each image of a padded batch has
its content at the top left of the grid, ``n`` tokens long along a line and
``l`` lines deep; an unpadded image has ``n = M`` and ``l = L``.

1. **Candidates.** The disjoint adjacent pairs ``(2j, 2j + 1)`` inside the
   content's length, ``j < n // 2``, in every line (the padding lines below
   or right of the content too, whose tokens are padding). An odd ``n``
   leaves its last content token unpaired.
2. **Similarity.** The cosine similarity of the two tokens' attention keys,
   averaged over heads; a key's norm counts as at least ``1e-6``, so a zero
   key is 0-similar to anything. With ``line_mode`` every line of an image
   uses the same similarity per ``j``: its mean over the content lines.
3. **Count.** Every line of an image merges ``r = num_merges(ratio, n)``
   pairs: ``ratio`` of its candidates, rounded half up.
4. **Choice.** The ``r`` most similar pairs of the line merge; equal
   similarities go to the lower ``j`` (a stable descending sort).
5. **Merge.** The odd token of a chosen pair merges into its even
   neighbour, one way: the pair becomes one token at the even position, the
   size-weighted mean of the two, whose size is the sum of theirs. Every
   other token is kept as it is, in its order.
6. **Padding.** A batch stays a regular grid, so every line loses the same
   ``R = max r`` tokens. A line that merged ``r < R`` drops its last
   ``R - r`` tokens, which are padding (a content shorter by ``d`` tokens
   has at most ``d`` fewer pairs to merge); their sizes are discarded.
7. **Source map.** Each token of the old grid is held by a new token: a kept
   token by itself, a dropped one (merged, or dropped padding) by the
   nearest kept token before it in its line. The map from the original
   patches to the old grid is composed with that.

Prefix tokens (the class token) are carried unchanged.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .atme_schedules import num_merges


def _content(pad_mask: Optional[Tensor], batch: int,
             grid: Tuple[int, int]) -> List[Tuple[int, int]]:
    """Per image, the ``(h, w)`` of its content, which must be the top-left
    corner of the grid."""
    H, W = grid
    if pad_mask is None:
        return [(H, W)] * batch
    cells = []
    for padding in pad_mask.view(batch, H, W):
        content = ~padding
        h = int(content.any(1).sum())
        w = int(content.any(0).sum())
        if int(content.sum()) != h * w or not content[:h, :w].all():
            raise ValueError('the content of a padded image must be the '
                             'top-left corner of the grid')
        cells.append((h, w))
    return cells


def pair_cosine(keys: Tensor) -> Tensor:
    """Cosine similarity of the pairs ``(2j, 2j + 1)`` along the last grid
    axis, averaged over heads.

    Args:
        keys (Tensor): ``(h, L, M, d)``, one image's keys by line.

    Returns:
        Tensor: ``(L, M // 2)`` float64: the ranking is the exact one, not
        one float rounding order's.
    """
    k = keys.double()
    k = k / k.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    P = k.shape[2] // 2
    even, odd = k[:, :, 0:2 * P:2], k[:, :, 1:2 * P:2]
    return (even * odd).sum(-1).mean(0)


def choose_pairs(sim: Tensor, num_pairs: int, r: int) -> List[int]:
    """The ``r`` most similar of the first ``num_pairs`` pairs of a line
    (``sim``, ``(M // 2,)``), ties to the lower index."""
    values = sim.tolist()
    candidates = sorted(range(num_pairs), key=lambda j: -values[j])
    return sorted(candidates[:r])


def merge_line(x: Tensor, size: Tensor, merged: Sequence[int],
               length: int) -> Tuple[Tensor, Tensor, List[int]]:
    """Merge the pairs ``merged`` of one line and keep its first
    ``length`` tokens.

    Args:
        x (Tensor): ``(M, C)`` the line's tokens.
        size (Tensor): ``(M,)`` their sizes.
        merged (Sequence[int]): ``j`` of the pairs ``(2j, 2j + 1)`` that
            merge.
        length (int): Tokens of the new line; the tokens past it are
            dropped padding.

    Returns:
        tuple: the new line's tokens ``(length, C)`` and sizes
        ``(length,)``, and for each old token the new token that holds it.
    """
    tokens, sizes, holder = [], [], []
    for m in range(x.shape[0]):
        if m % 2 and m // 2 in merged:  # one way: into its even neighbour
            s = sizes[-1] + size[m]
            tokens[-1] = (sizes[-1] * tokens[-1] + size[m] * x[m]) / s
            sizes[-1] = s
        elif len(tokens) < length:
            tokens.append(x[m])
            sizes.append(size[m])
        # else padding past the batch's new length: dropped, size and all
        holder.append(len(tokens) - 1)  # the last kept token up to m
    return torch.stack(tokens), torch.stack(sizes), holder


def merge_reference(
    x: Tensor,
    keys: Tensor,
    grid: Tuple[int, int],
    vertical: bool,
    ratio: float,
    size: Optional[Tensor] = None,
    source: Optional[Tensor] = None,
    line_mode: bool = False,
    num_prefix: int = 0,
    pad_mask: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """One ATME merge by its definition (module doc).

    Args:
        x (Tensor): ``(B, P + H*W, C)`` tokens, the ``P`` prefix tokens
            first, the grid row by row.
        keys (Tensor): ``(B, h, P + H*W, d)`` their attention keys.
        grid (tuple): ``(H, W)``.
        vertical (bool): Merge along columns (VTM) instead of rows.
        ratio (float): Fraction of each line's candidate pairs that merge.
        size (Tensor, optional): ``(B, H*W)`` token sizes; none: all 1.
        source (Tensor, optional): ``(B, N0)`` long, the token of the grid
            that holds each original patch; none: the identity.
        line_mode (bool): One choice of pairs for all lines of an image.
        num_prefix (int): ``P``.
        pad_mask (Tensor, optional): ``(B, H*W)`` bool, True on padding.

    Returns:
        tuple: the new tokens ``(B, P + H'*W', C)``, their sizes
        ``(B, H'*W')`` (``size``'s dtype, else x's), the source map
        ``(B, N0)`` long (``N0 = H*W`` without ``source``) and the padding
        mask ``(B, H'*W')`` (none without ``pad_mask``), where
        ``(H', W') = (H - R, W)`` if ``vertical`` else ``(H, W - R)``.
    """
    B, T, C = x.shape
    H, W = grid
    cells = _content(pad_mask, B, grid)
    if size is None:
        size = x.new_ones(B, H * W)
    # lay every image out by line: (B, L, M, ...)
    patches = x[:, num_prefix:].reshape(B, H, W, C)
    k = keys[:, :, num_prefix:].unflatten(2, (H, W))
    size = size.reshape(B, H, W)
    if vertical:
        patches, k, size = (patches.transpose(1, 2), k.transpose(2, 3),
                            size.transpose(1, 2))
        cells = [(w, h) for h, w in cells]
    L, M = patches.shape[1:3]
    counts = [num_merges(ratio, n) for _, n in cells]
    length = M - max(counts)

    out, new_size, holder = [], [], []
    for b, (lines, n) in enumerate(cells):
        sim = pair_cosine(k[b])
        if line_mode:
            sim = sim[:lines].mean(0).expand_as(sim)
        line_out = [
            merge_line(patches[b, i], size[b, i],
                       choose_pairs(sim[i], n // 2, counts[b]), length)
            for i in range(L)
        ]
        out.append(torch.stack([t for t, _, _ in line_out]))
        new_size.append(torch.stack([s for _, s, _ in line_out]))
        holder.append(torch.tensor([h for _, _, h in line_out]))
    out, new_size, holder = (torch.stack(t)
                             for t in (out, new_size, holder))

    # the content loses the image's own merges; the rest is padding
    new_content = torch.stack([
        (torch.arange(L)[:, None] < lines) & (torch.arange(length) < n - r)
        for (lines, n), r in zip(cells, counts)
    ])
    # a holder (line i, position p) as an index into the new grid
    i = torch.arange(L)[:, None]
    holder = holder * L + i if vertical else i * length + holder
    if vertical:  # lines back to columns
        out, new_size, holder, new_content = (
            t.transpose(1, 2) for t in (out, new_size, holder, new_content))
    holder = holder.reshape(B, H * W).to(x.device)
    source = holder if source is None else holder.gather(1, source)
    new_pad = None if pad_mask is None else ~new_content.reshape(B, -1).to(
        x.device)
    tokens = torch.cat([x[:, :num_prefix], out.reshape(B, -1, C)], 1)
    return tokens, new_size.reshape(B, -1), source, new_pad
