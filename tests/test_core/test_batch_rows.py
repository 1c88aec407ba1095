from collections import OrderedDict

import torch

from cait_mm.core import batch_rows
from cait_mm.core.batch_rows import batch_select, flat_index, shape_cached


def test_the_table_cache_keeps_what_is_in_use(monkeypatch):
    tables = OrderedDict()
    monkeypatch.setattr(batch_rows, '_TABLES', tables)
    built = []
    for i in range(3 * batch_rows._MAX_TABLES):
        shape_cached(('filler', i), lambda: i)
        shape_cached(('in use', ), lambda: built.append(1) or 'table')
    assert built == [1]
    assert len(tables) == batch_rows._MAX_TABLES
    # the least recently used went first
    assert ('filler', 0) not in tables
    assert ('filler', 3 * batch_rows._MAX_TABLES - 1) in tables


def test_a_build_that_caches_tables_itself_keeps_the_bound(monkeypatch):
    tables = OrderedDict()
    monkeypatch.setattr(batch_rows, '_TABLES', tables)
    for i in range(batch_rows._MAX_TABLES + 5):
        # prefix_rows builds on row_start: two tables in one call
        batch_rows.prefix_rows(i + 1, 4, 1, torch.device('cpu'))
    assert len(tables) == batch_rows._MAX_TABLES


def test_rows_select_per_image():
    x = torch.arange(2 * 5 * 3.).view(2, 5, 3)
    index = torch.tensor([[4, 0], [1, 1]])
    assert torch.equal(batch_select(x, index),
                       torch.stack([x[0, [4, 0]], x[1, [1, 1]]]))
    assert flat_index(index, 5, 1).tolist() == [5, 1, 7, 7]
