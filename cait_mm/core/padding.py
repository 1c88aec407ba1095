"""Padded batches: where each image's content lies on a grid.

mmdet pads a batch at the bottom/right to its largest image. A ViT attends
over every token, padding included, so the backbone, the token state and the
neck must all know each image's content. This module is the one place that
turns content sizes in pixels into content grids (``ceil(size / stride)``
cells, from Python ints: no tensor is read back from the device) and grids
into masks.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .batch_rows import shape_cached

Cells = List[Tuple[int, int]]


def content_cells(valid_sizes: Optional[Sequence[Tuple[int, int]]],
                  stride: int, grid: Tuple[int, int],
                  what: str = 'input grid') -> Optional[Cells]:
    """Per image, its content ``(h, w)`` in cells of ``stride`` pixels.

    Args:
        valid_sizes: Per image, the content ``(h, w)`` in pixels (mmdet's
            ``img_shape``), or ``None``.
        stride (int): Pixels per cell (the patch size).
        grid (tuple): ``(H, W)`` cells of the padded batch.
        what (str): What ``grid`` is, for the error message.

    Returns:
        list: ``[(ceil(h / stride), ceil(w / stride)), ...]``, or ``None``
        when there are no sizes or no image has padding.

    Raises:
        ValueError: if a content is larger than ``grid``.
    """
    if valid_sizes is None:
        return None
    cells = [(-(-int(h) // stride), -(-int(w) // stride))
             for h, w in valid_sizes]
    H, W = grid
    if any(h > H or w > W for h, w in cells):
        raise ValueError(f'valid_sizes {list(valid_sizes)} exceed the {what} '
                         f'{tuple(grid)} of stride {stride}')
    if all(c == (H, W) for c in cells):
        return None
    return cells


def scale_cells(cells: Cells, scale: float) -> Cells:
    """Content cells of a map ``scale`` times as fine, rounded up (a
    partly covered cell belongs to the content)."""
    return [(math.ceil(h * scale), math.ceil(w * scale)) for h, w in cells]


def content_mask(cells: Sequence[Tuple[int, int]], shape: Tuple[int, int],
                 device: Optional[torch.device] = None) -> Tensor:
    """``(B, H, W)`` bool, True on each image's top-left content.

    Built once per set of contents, grid and device (the batch's sizes are
    host ints: nothing is read back from the device, and a CUDA graph or
    compiled graph can be captured for a fixed set of sizes).

    Args:
        cells (Sequence[tuple]): The content ``(h, w)`` of each image.
        shape (tuple): ``(H, W)`` of the grid.
        device (torch.device, optional): Where the mask lives.
    """
    cells = tuple((int(h), int(w)) for h, w in cells)
    shape = tuple(shape)

    def build() -> Tensor:
        H, W = shape
        sizes = torch.tensor(cells, device=device).view(-1, 2)
        rows = torch.arange(H, device=device)
        cols = torch.arange(W, device=device)
        return (rows[None, :, None] < sizes[:, 0, None, None]) \
            & (cols[None, None, :] < sizes[:, 1, None, None])

    return shape_cached(('content_mask', cells, shape, device), build)
