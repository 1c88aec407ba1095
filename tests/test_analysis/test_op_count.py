"""Operator counts: deterministic, views and allocations are no kernels."""
import torch
import torch.nn.functional as F

from cait_mm.analysis.op_count import count_ops
from cait_mm.models import CAITViT


def test_top_level_ops_and_kernels():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    ops = count_ops(lambda: (a + b).relu())
    assert (ops.top_level, ops.kernels) == (2, 2)
    assert ops.by_name == {'aten::add': 1, 'aten::relu': 1}
    # views are dispatched ops but move no data
    ops = count_ops(lambda: a.view(3, 4).t().unsqueeze(0))
    assert (ops.top_level, ops.kernels) == (3, 0)
    # a composite op counts once at the top, by its kernels below
    w = torch.randn(5, 3)
    ops = count_ops(lambda: F.linear(a, w))
    assert ops.top_level == 1 and ops.by_name == {'aten::linear': 1}
    assert ops.kernels == 1


def test_counts_are_deterministic_and_show_the_reducer_bookkeeping():
    arch = dict(embed_dims=32, num_layers=4, num_heads=2, mlp_ratio=2.)
    x = torch.randn(2, 3, 64, 64)
    counts = {}
    for name, reducer in (('dense', None),
                          ('atme', dict(type='ATME',
                                        schedule=[(1, 'h', .5)]))):
        model = CAITViT(arch=arch, img_size=64, out_indices=(1, 3),
                        token_reducer=reducer).eval()
        model(x)  # index tables are built once per shape
        first, second = count_ops(lambda: model(x)), count_ops(
            lambda: model(x))
        assert first == second
        counts[name] = first
    assert counts['atme'].top_level > counts['dense'].top_level
    assert counts['atme'].kernels > counts['dense'].kernels
