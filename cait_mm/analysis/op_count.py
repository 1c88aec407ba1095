"""Dispatched operators of a forward, counted with ``torch.profiler``.

An eager forward pays for every operator it dispatches (Python, the
dispatcher and, on a GPU, a launch of about 10 us each), whatever its size;
token reduction earns its FLOPs back only if its bookkeeping is a handful
of operators. Counts are deterministic for given shapes, so tests assert
budgets on them where they could never assert a time.

- *top-level ops*: ``aten::`` calls made by the code itself (not from
  inside another ``aten::`` op), views included;
- *kernels*: the innermost ``aten::`` calls that do work: not views (their
  schema returns an alias of an input) nor bare allocations (``empty*``,
  ``new_empty*``, ``resize_``),
  and calling no other op that does. On a GPU each is about one launch.
"""
import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict

import torch
from torch.profiler import ProfilerActivity, profile


@dataclass
class OpCount:
    """Operators dispatched by one call."""
    top_level: int
    kernels: int
    by_name: Dict[str, int] = field(default_factory=dict)
    kernels_by_name: Dict[str, int] = field(default_factory=dict)


def _is_aten(event) -> bool:
    return event.name.startswith('aten::')


@functools.lru_cache(maxsize=None)
def _moves_no_data(name: str) -> bool:
    """Whether ``aten::name`` is a view or a bare allocation."""
    op = name[len('aten::'):]
    # allocations: ``resize_`` here only sizes a fresh output
    if op.startswith(('empty', 'new_empty')) or op == 'resize_':
        return True
    packet = getattr(torch.ops.aten, op, None)
    if packet is None:
        return False
    for overload in packet.overloads():
        for ret in getattr(packet, overload)._schema.returns:
            info = ret.alias_info
            if info is not None and not info.is_write:
                return True
    return False


def _aten_parent(event):
    parent = event.cpu_parent
    while parent is not None and not _is_aten(parent):
        parent = parent.cpu_parent
    return parent


def count_ops(fn: Callable[[], object]) -> OpCount:
    """Run ``fn()`` once under the profiler (CPU activity) and count the
    ``aten::`` operators it dispatched."""
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.events() if _is_aten(e)]
    children: Dict[int, list] = {}
    for event in events:
        parent = _aten_parent(event)
        if parent is not None:
            children.setdefault(id(parent), []).append(event)

    def works_below(event) -> bool:
        return any(not _moves_no_data(c.name) or works_below(c)
                   for c in children.get(id(event), ()))

    top = [e for e in events if _aten_parent(e) is None]
    # the innermost ops that move data (an op whose work is done by ops it
    # calls is not counted again)
    kernels = [e for e in events
               if not _moves_no_data(e.name) and not works_below(e)]
    return OpCount(len(top), len(kernels),
                   dict(Counter(e.name for e in top).most_common()),
                   dict(Counter(e.name for e in kernels).most_common()))
