"""ONNX export of backbones and dense models for a fixed input size, and
ONNX Runtime to run and check them.

torch's ONNX exporter (``dynamo=True``) traces the token reducers whole.
One operator needs a translation of ours: the *stable* sort that ATME and
TPS rank with (so that equal scores break by position, as in PyTorch). ONNX's
``TopK`` with ``k`` = the whole axis is that sort: its spec breaks ties by
the lower index. ATME's Triton merge (``kernel='triton'``) is exported as
its reference, the same model in ONNX operators.
"""
import contextlib
from typing import List, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

#: opset 18: ``TopK`` with ``sorted``/``largest``, ``ScatterElements``
#: with ``min``/``max`` reductions (ATME's row selection)
OPSET = 18


def _stable_sort(self, stable=None, dim: int = -1, descending: bool = False):
    """``aten::sort.stable`` as ONNX ``TopK`` over the whole axis."""
    from onnxscript import opset18 as op
    length = op.Shape(self, start=dim) if dim == -1 else op.Shape(
        self, start=dim, end=dim + 1)
    return op.TopK(self, length, axis=dim, largest=int(bool(descending)),
                   sorted=1)


@contextlib.contextmanager
def _reference_merges(module: nn.Module):
    """ATME's reference merge in every reducer of ``module`` for a while:
    ONNX has no Triton kernels, and the reference computes the same."""
    changed = [m for m in module.modules()
               if getattr(m, 'kernel', 'torch') == 'triton']
    for m in changed:
        m.kernel = 'torch'
    try:
        yield
    finally:
        for m in changed:
            m.kernel = 'triton'


def export_onnx(module: nn.Module, inputs: Tensor, path: str) -> str:
    """Export ``module(inputs)`` (eval mode, fixed shapes) to ``path``.

    Returns:
        str: ``path``.
    """
    module = module.eval()
    with torch.no_grad(), _reference_merges(module):
        torch.onnx.export(
            module, (inputs, ),
            path,
            dynamo=True,
            opset_version=OPSET,
            external_data=False,
            custom_translation_table={
                torch.ops.aten.sort.stable: _stable_sort
            },
            verbose=False)
    return path


def onnx_session(path: str, threads: int = 0, spinning: bool = True):
    """An ONNX Runtime CPU session of ``path`` (``threads``: intra-op
    threads, 0 = ONNX Runtime's default).

    ``spinning=False`` makes its threads sleep as soon as a run ends. By
    default (ONNX Runtime's) they spin-wait for the next run, which is
    fastest for one session alone but takes the cores from any other
    session that runs meanwhile: several sessions timed in turn in one
    process (``tools/analysis_tools/benchmark.py --onnx``) then each run 1.7x
    slower, and unevenly, on a 2-core machine.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry('session.intra_op.allow_spinning',
                                         '0')
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])


def run_onnx(session, inputs: Union[Tensor, np.ndarray]) -> List[np.ndarray]:
    """The session's outputs for one input array."""
    if isinstance(inputs, Tensor):
        inputs = inputs.detach().cpu().numpy()
    return session.run(None, {session.get_inputs()[0].name: inputs})


def _flatten(outputs) -> List[Tensor]:
    if isinstance(outputs, Tensor):
        return [outputs]
    flat: List[Tensor] = []
    for item in outputs:
        flat.extend(_flatten(item))
    return flat


def check_onnx(module: nn.Module, session, inputs: Tensor) -> float:
    """The largest absolute difference between ONNX Runtime's outputs and
    PyTorch's for ``inputs``.

    Raises:
        ValueError: if the number or shapes of the outputs differ.
    """
    with torch.no_grad():
        expected: Sequence[Tensor] = _flatten(module.eval()(inputs))
    got = run_onnx(session, inputs)
    if len(got) != len(expected):
        raise ValueError(f'ONNX Runtime gave {len(got)} outputs, PyTorch '
                         f'{len(expected)}')
    worst = 0.
    for a, b in zip(got, expected):
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f'output shape {tuple(a.shape)} from ONNX '
                             f'Runtime, {tuple(b.shape)} from PyTorch')
        worst = max(worst, float(np.abs(a - b.cpu().numpy()).max()))
    return worst


class PartForward(nn.Module):
    """The tensors-only part of a task model that a deployment runs, as a
    module to export: ``'backbone'``; ``'features'`` (backbone and neck);
    ``'network'``, a segmentor's ``mode='tensor'`` forward (the decode
    head's logits, before resizing to the image and post-processing).

    Detectors export ``'features'``: their heads need proposals, whose
    number depends on the image.
    """
    PARTS = ('backbone', 'features', 'network')

    def __init__(self, model: nn.Module, part: str):
        super().__init__()
        if part not in self.PARTS:
            raise ValueError(f'part must be one of {self.PARTS}, got '
                             f'{part!r}')
        detector = any(cls.__module__.startswith('mmdet.')
                       for cls in type(model).__mro__)
        if part == 'network' and detector:
            raise ValueError(
                f"{type(model).__name__}: a detector's heads depend on its "
                "proposals; export part='features' (backbone and neck)")
        self.model = model
        self.part = part

    def forward(self, x: Tensor):
        if self.part == 'backbone':
            return self.model.backbone(x)
        if self.part == 'features':
            return self.model.extract_feat(x)
        return self.model(x, mode='tensor')
