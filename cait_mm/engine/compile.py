"""``torch.compile`` for the parts of a task model that run on tensors of
fixed shapes, where users run models (``tools/test.py --compile``,
``tools/analysis_tools/benchmark.py --compile``).

Training uses MMEngine's own ``compile`` config key (it compiles
``train_step``). For testing, compiling the whole ``test_step`` would trace
data samples, proposals and post-processing, whose shapes vary by image;
the backbone, neck and decode head are where the time goes and they trace
into whole graphs (the backbones with ``fullgraph=True``: a test guards it),
so their ``forward`` methods are compiled in place (parameter names, and
so checkpoints, do not change). On CUDA the default mode is
``'reduce-overhead'`` (CUDA graphs), which takes the per-operator launch
cost out of token reduction's bookkeeping.
"""
import argparse
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.model import is_model_wrapper
from torch import nn

#: The parts compiled: mmseg's and mmdet's names for them. Heads with
#: proposals (RPN, RoI) and post-processing stay eager.
COMPILED_PARTS = ('backbone', 'neck', 'decode_head')


def compile_options(device: str = 'cpu', mode: Optional[str] = None,
                    backend: str = 'inductor') -> Dict:
    """``torch.compile`` keyword arguments: static shapes (a new input size
    compiles anew; mmseg's ``mode='whole'`` test sizes are few), and
    ``mode`` by default ``'reduce-overhead'`` on CUDA."""
    if mode is None and str(device).startswith('cuda'):
        mode = 'reduce-overhead'
    options = dict(backend=backend, dynamic=False)
    if mode is not None:
        options['mode'] = mode
    return options


def compile_parts(model: nn.Module,
                  parts: Sequence[str] = COMPILED_PARTS,
                  **options) -> List[str]:
    """Compile ``model``'s ``parts`` in place with ``torch.compile``
    ``options`` (:func:`compile_options`); returns the names compiled.

    Raises:
        ValueError: if the model has none of ``parts``.
    """
    if is_model_wrapper(model):
        model = model.module
    compiled = []
    for name in parts:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            # the forward, not the module's call: heads are called as
            # ``head.forward(x)`` from their own predict/loss
            module.forward = torch.compile(module.forward, **options)
            compiled.append(name)
    if not compiled:
        raise ValueError(f'{type(model).__name__} has none of {list(parts)} '
                         'to compile')
    return compiled


def add_compile_arguments(parser: argparse.ArgumentParser) -> None:
    """``--compile``, ``--compile-mode`` and ``--compile-backend``, as
    tools/train.py and tools/test.py take them."""
    parser.add_argument(
        '--compile', action='store_true',
        help='torch.compile the backbone, neck and decode head forwards (in '
        'place; the first batch of each input size compiles; on CUDA mode '
        "'reduce-overhead', CUDA graphs)")
    parser.add_argument(
        '--compile-mode', help="torch.compile mode (default: "
        "'reduce-overhead' on CUDA, torch's default on CPU)")
    parser.add_argument(
        '--compile-backend', default='inductor',
        help='torch.compile backend')


def compile_runner_model(runner, args: argparse.Namespace) -> None:
    """With ``args.compile`` (:func:`add_compile_arguments`), compile the
    runner's model parts on the device the model is on, and log which."""
    if not args.compile:
        return
    device = next(runner.model.parameters()).device.type
    parts = compile_parts(
        runner.model,
        **compile_options(device, args.compile_mode, args.compile_backend))
    runner.logger.info(f'compiled {", ".join(parts)} with torch.compile')
