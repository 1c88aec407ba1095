"""Honest FLOP counts with MMEngine's ``FlopAnalyzer``.

MMEngine counts matrix products, convolutions and norms, and treats every
other operator as free: ``gather``, ``argsort``, ``cumsum``, ``norm`` (the
token-merging and restoration machinery) count zero, and so does
``scaled_dot_product_attention`` (the attention itself!). Comparing a token
reducer with the dense model on those numbers flatters the reducer twice. The
handles below count, for every model alike:

- attention: ``B * h * N * M * (d_qk + d_v)`` multiply-adds;
- sorting: ``n * log2(n)`` per sorted line;
- gathers, scatters, cumsums, selects and elementwise arithmetic: one per
  element produced (or consumed, for scatters and reductions).

Multiply-adds count as one FLOP, MMEngine's (and fvcore's) convention.
"""
import math
from typing import Any, Counter, Dict, List, Tuple

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape
from torch import nn


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape is not None else 0


def _sdpa_flops(inputs: List[Any], outputs: List[Any]) -> int:
    q, k, v = (get_shape(t) for t in inputs[:3])
    *batch, n, d = q
    m, dv = k[-2], v[-1]
    return _numel(batch) * n * m * (d + dv)


def _sort_flops(inputs: List[Any], outputs: List[Any]) -> int:
    shape = get_shape(inputs[0])
    dim = next((a.toIValue() for a in inputs[1:]
                if a.type().kind() == 'IntType'), -1)
    n = shape[dim]
    if n == 0:  # e.g. ToMe's last step, when every token of set A merges
        return 0
    return _numel(shape) // n * n * max(math.ceil(math.log2(n)), 1)


def _per_output(inputs: List[Any], outputs: List[Any]) -> int:
    return _numel(get_shape(outputs[0]))


def _per_input(inputs: List[Any], outputs: List[Any]) -> int:
    return _numel(get_shape(inputs[0]))


def _per_source(inputs: List[Any], outputs: List[Any]) -> int:
    # scatter*(self, dim, index, src) / index_add(self, dim, index, source)
    return _numel(get_shape(inputs[-1])) or _numel(get_shape(inputs[2]))


EXTRA_HANDLES = {
    'aten::scaled_dot_product_attention': _sdpa_flops,
    'aten::sort': _sort_flops,
    'aten::argsort': _sort_flops,
    'aten::topk': _sort_flops,
    'aten::gather': _per_output,
    'aten::index_select': _per_output,
    'aten::where': _per_output,
    'aten::cumsum': _per_output,
    'aten::scatter': _per_source,
    'aten::scatter_': _per_source,
    'aten::scatter_add': _per_source,
    'aten::scatter_add_': _per_source,
    'aten::index_add': _per_source,
    'aten::index_add_': _per_source,
    'aten::max': _per_input,
    'aten::amax': _per_input,
    'aten::scatter_reduce': _per_source,
    'aten::scatter_reduce_': _per_source,
    'aten::linalg_vector_norm': _per_input,
    'aten::norm': _per_input,
    'aten::sum': _per_input,
    'aten::mean': _per_input,
    'aten::softmax': _per_output,
    **{
        f'aten::{op}': _per_output
        for op in ('add', 'add_', 'sub', 'sub_', 'rsub', 'mul', 'mul_', 'div',
                   'div_', 'pow', 'exp', 'log', 'gelu', 'clamp_min')
    },
}


def _tensors(value) -> List[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


class _TensorOutputs(nn.Module):
    """``model`` with only the tensors of its outputs: the tracer refuses
    outputs such as floats or data samples."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        return tuple(_tensors(self.model(*inputs)))


def flop_analyzer(model: nn.Module, inputs: Tuple) -> FlopAnalyzer:
    """MMEngine's ``FlopAnalyzer`` with :data:`EXTRA_HANDLES` added."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**EXTRA_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer


def count_flops(model: nn.Module, inputs: Tuple) -> Tuple[int, Counter]:
    """Total FLOPs of ``model(*inputs)`` and the count per operator."""
    total, by_operator, _ = count_flops_by_module(model, inputs, {})
    return total, by_operator


def count_flops_by_module(
        model: nn.Module, inputs: Tuple, modules: Dict[str, nn.Module]
) -> Tuple[int, Counter, Dict[str, int]]:
    """Like :func:`count_flops`, plus the FLOPs spent inside each of
    ``modules`` (name -> a submodule of ``model``, e.g. a segmentor's
    backbone, neck and heads), from the same trace."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            wrapper = _TensorOutputs(model)
            analyzer = flop_analyzer(wrapper, inputs)
            traced = {id(m): n for n, m in wrapper.named_modules()}
            by_module = analyzer.by_module()
            parts = {
                name: int(by_module.get(traced.get(id(module)), 0))
                for name, module in modules.items()
            }
            return analyzer.total(), analyzer.by_operator(), parts
    finally:
        for module, training in modes:
            module.training = training


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
