"""Per-image row selection and accumulation on a batch of token sequences.

Token reducers and restoration move whole tokens (rows of ``C`` channels).
They do it through ``index_select`` / ``index_add`` on the batch flattened
to ``(B * N, C)``: on CPU these are 3-5x faster than ``gather`` /
``scatter_add`` with an index expanded over the channels, and on CUDA they
are one kernel each as well.

Index tables that depend only on shapes (row offsets, position ranges) are
built once per shape and device (:func:`shape_cached`): an eager forward pays
for every operator it dispatches, however small.
"""
from collections import OrderedDict
from typing import Callable, Hashable

import torch
from torch import Tensor

# least recently used first; bounded for runs that see many sizes
_TABLES: 'OrderedDict[Hashable, object]' = OrderedDict()
_MAX_TABLES = 512


def shape_cached(key: Hashable, build: Callable[[], object]) -> object:
    """``build()``, once per ``key`` (shapes and device, never data).

    Under ``torch.compile`` the table is built in the graph, where the
    compiler folds it into constants.
    """
    if torch.compiler.is_compiling():
        return build()
    table = _TABLES.get(key)
    if table is None:
        # evict the stalest table only: clearing all at once made the next
        # forward rebuild every table a warm forward had (and dispatch its
        # ops again), depending on how many sizes came before
        table = _TABLES[key] = build()  # a build may cache tables too
        while len(_TABLES) > _MAX_TABLES:
            _TABLES.popitem(last=False)
    else:
        _TABLES.move_to_end(key)
    return table


def row_start(batch: int, length: int, skip: int,
              device: torch.device) -> Tensor:
    """``(B, 1)`` long, ``b * length + skip``: the row of position 0 after
    ``skip`` leading tokens of image ``b`` in a batch of ``length`` tokens
    per image flattened to ``(B * length, C)``."""
    return shape_cached(
        ('row_start', batch, length, skip, device),
        lambda: torch.arange(batch, device=device)[:, None] * length + skip)


def prefix_rows(batch: int, length: int, num_prefix: int,
                device: torch.device) -> Tensor:
    """``(B, P)`` long, the rows of each image's ``num_prefix`` leading
    tokens in a batch of ``length`` tokens per image flattened to
    ``(B * length, C)``: what a reducer's row selection starts with."""
    return shape_cached(
        ('prefix_rows', batch, length, num_prefix, device),
        lambda: row_start(batch, length, 0, device) + torch.arange(
            num_prefix, device=device))


def flat_index(index: Tensor, length: int, skip: int = 0) -> Tensor:
    """Per-image indices ``(B, M)`` (counted after ``skip`` leading
    tokens) into the rows of a batch of ``length`` tokens per image
    flattened to ``(B * length, C)``: ``(B * M,)``."""
    return (index + row_start(index.shape[0], length, skip,
                              index.device)).view(-1)


def batch_select(x: Tensor, index: Tensor) -> Tensor:
    """``x (B, N, C)``, ``index (B, M)`` -> ``(B, M, C)``, row
    ``index[b, m]`` of image ``b``."""
    B, N, C = x.shape
    return x.reshape(B * N, C).index_select(
        0, flat_index(index, N)).view(B, -1, C)
