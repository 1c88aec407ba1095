"""Measure models side by side: same input, one run, ratios to the first.

Timing interleaves the models (round-robin over repeats), so a slow spell of
a shared machine hits every model alike instead of whichever ran then; the
median of the repeats is reported.
"""
import contextlib
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, DictAction
from torch import nn

from cait_mm.core import match_flops
from cait_mm.core.spec import parse_arch
from cait_mm.core.token_reducer import saved_config
from cait_mm.engine.compile import COMPILED_PARTS, compile_parts
from .complexity import count_flops_by_module, count_params
from .model_from_config import build_model
from .op_count import count_ops

PARTS = ('model', 'network', 'features', 'backbone')


@dataclass
class Entry:
    """One model to measure: a config, its overrides and, optionally, the
    checkpoint it runs (an exported compressed one rebuilds the pruned
    model from its file; without one the weights are random: speed, FLOPs
    and params need none)."""
    config: str
    overrides: Dict = field(default_factory=dict)
    label: Optional[str] = None
    checkpoint: Optional[str] = None

    @classmethod
    def parse(cls, spec: str) -> 'Entry':
        """``CONFIG[@key=value[@key=value...]]``; values as --cfg-options.

        e.g. ``configs/upernet/upernet_deit_s_ade20k.py@model.backbone
        .token_reducer.type=ATME@model.backbone.token_reducer.schedule=
        deit-s`` (dotted keys create the reducer in a dense config).
        """
        config, *pairs = spec.split('@')
        overrides = {}
        for pair in pairs:
            if '=' not in pair:
                raise ValueError(f'Override "{pair}" in "{spec}" is not '
                                 'key=value')
            key, value = pair.split('=', 1)
            overrides[key] = DictAction._parse_iterable(value)
        return cls(config, overrides)

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        stem = self.config.rsplit('/', 1)[-1].rsplit('.', 1)[0]
        extra = ' '.join(f'{k.rsplit(".", 1)[-1]}={v}'
                         for k, v in self.overrides.items())
        return f'{stem} {extra}'.strip()


def matched_entries(config: str, shape: Tuple[int, int], target: float,
                    reducers: Sequence[str],
                    settings: Optional[Mapping[str, Dict]] = None
                    ) -> List[Entry]:
    """``config`` (dense) and, per token reducer, ``config`` with that
    reducer set for ``target`` block FLOPs (a fraction of the dense
    backbone's) at ``shape``: rows compared at equal FLOPs
    (:func:`~cait_mm.core.match_flops`; ``settings``: per reducer type,
    more arguments of its ``for_flops``).
    """
    from mmengine.config import Config
    backbone = Config.fromfile(config).model.backbone
    arch = parse_arch(backbone.get('arch') or 'deit-s')
    patch = backbone.get('patch_size') or 16
    grid = tuple(-(-n // patch) for n in shape)
    entries = [Entry(config, label='dense')]
    for match in match_flops(target, grid, arch, reducers, settings):
        cfg = match.config
        if isinstance(backbone.get('token_reducer'), dict):
            cfg = dict(_delete_=True, **cfg)  # replace it, not merge into it
        entries.append(Entry(
            config, {'model.backbone.token_reducer': cfg},
            label=f'{match.kind} @ {match.fraction:.3f} block FLOPs'))
    return entries


def bound_entries(entries: Sequence[Entry]) -> List[Entry]:
    """``entries``, each one with a token reducer followed by its bound:
    the same model with :class:`~cait_mm.core.TokenCountBound` in place of
    the reducer (the blocks at the reducer's token counts, reductions that
    cost nothing), labelled ``'<name> bound'``.

    Set against the dense row, the bound is the most that token schedule
    can give on the machine; against the reducer's row, the reducer's own
    cost. Entries whose reducers differ only in how they run (ATME's
    ``kernel``, the backbone's ``attn_bias_mode``: a bound has no sizes,
    so no bias) share the first one's bound.
    """
    out, bounds = [], []
    key = 'model.backbone.token_reducer'
    bias_mode = 'model.backbone.attn_bias_mode'
    for entry in entries:
        out.append(entry)
        cfg = Config.fromfile(entry.config)
        cfg.merge_from_dict(entry.overrides)
        reducer = cfg.model.get('backbone', {}).get('token_reducer')
        if not reducer:
            continue
        overrides = {k: v for k, v in entry.overrides.items()
                     if not (k == key or k.startswith(key + '.')
                             or k == bias_mode)}
        bound = dict(type='TokenCountBound',
                     reducer=saved_config(reducer.to_dict()))
        base = Config.fromfile(entry.config).model.get('backbone', {})
        if isinstance(base.get('token_reducer'), dict):
            bound = dict(_delete_=True, **bound)  # replace, not merge into
        overrides[key] = bound
        if (entry.config, overrides) in bounds:
            continue
        bounds.append((entry.config, overrides))
        out.append(Entry(entry.config, overrides, f'{entry.name} bound'))
    return out


@dataclass
class Result:
    name: str
    part: str
    flops: int
    params: int
    latency_ms: float
    images_per_s: float
    speedup: float = 1.
    flops_ratio: float = 1.
    #: aten ops dispatched by one eager call, and those that do work
    #: (:mod:`.op_count`)
    ops: int = 0
    kernels: int = 0
    #: FLOPs/image and params of each part of a whole model (backbone,
    #: neck, heads), for ``part`` 'model' and 'network'
    parts: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    #: with ``profile``: the operators and kernels that took the most time
    #: in one timed call (as timed: compiled, CUDA graph or eager), and the
    #: time the device spent in kernels (CUDA; on the CPU the operators'
    #: own time), ms
    profile: Optional[str] = None
    busy_ms: Optional[float] = None
    #: with ``profile``: kernels launched in that call (CUDA), or aten ops
    #: run (CPU): as timed, so CUDA-graph replays count their kernels
    launches: Optional[int] = None


def _data_samples(scope: str, batch: int, shape: Tuple[int, int]):
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                batch_input_shape=shape, scale_factor=(1., 1.),
                padding_size=[0, 0, 0, 0])
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample as Sample
    else:
        from mmseg.structures import SegDataSample as Sample
    return [Sample(metainfo=meta) for _ in range(batch)]


def part_fn(model: nn.Module, part: str, batch: int,
            shape: Tuple[int, int]) -> Tuple[Callable, nn.Module]:
    """What to time for ``part`` and what to count FLOPs on.

    ``model``: the full inference (``predict``: heads, resizing, post-
    processing); FLOPs are counted on ``mode='tensor'``. ``network``: that
    ``mode='tensor'`` forward alone (backbone, neck and heads without
    resizing to the image or post-processing), so that ``model`` minus
    ``network`` is what post-processing costs. ``features``: backbone and
    neck. ``backbone``: the backbone alone.
    """
    if part == 'backbone':
        return model.backbone, model.backbone
    if part == 'features':
        return model.extract_feat, _Call(model, model.extract_feat)
    # by the class's ancestry: our detectors subclass mmdet's
    scope = 'mmdet' if any(cls.__module__.startswith('mmdet.')
                           for cls in type(model).__mro__) else 'mmseg'
    samples = _data_samples(scope, batch, shape)
    counted = _Call(model, lambda x: model(x, samples[:1], mode='tensor'))
    if part == 'network':
        return (lambda x: model(x, samples, mode='tensor')), counted
    return (lambda x: model.predict(x, samples)), counted


class _Call(nn.Module):
    """``fn`` over ``model`` as a module, for MMEngine's tracer (which must
    see the model's parameters as the module's)."""

    def __init__(self, model: nn.Module, fn: Callable):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def cuda_graphed(run: Callable, inputs: torch.Tensor) -> Callable:
    """``run(inputs)`` captured once in a CUDA graph; the returned callable
    replays it (on the same static ``inputs``).

    Replaying takes the Python and kernel-launch cost out of the timing,
    which is how static-shape inference is deployed. Capture fails on any
    host synchronisation, e.g. token reduction of padded batches.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up on a side stream, as capture requires
            run(inputs)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run(inputs)
    return lambda _: graph.replay()


def runtime_cudnn_benchmark(entries: Sequence[Entry]) -> bool:
    """The entries' ``env_cfg.cudnn_benchmark`` (off where unset): what
    mmengine's Runner sets in ``tools/train.py`` and ``tools/test.py``
    (mmseg's runtime turns it on, mmdet's, for varying image sizes, off),
    so a benchmark runs convolutions, the patch embedding's included, as
    users' runs do.

    Raises:
        ValueError: if the entries disagree; they share one process.
    """
    wanted = {}
    for entry in entries:
        cfg = Config.fromfile(entry.config)
        cfg.merge_from_dict(entry.overrides)
        wanted[entry.name] = bool(
            cfg.get('env_cfg', {}).get('cudnn_benchmark', False))
    if len(set(wanted.values())) > 1:
        raise ValueError(
            'the entries disagree on env_cfg.cudnn_benchmark, which is one '
            f'setting of the process: {wanted}')
    return next(iter(wanted.values()), False)


@contextlib.contextmanager
def _cudnn_benchmark(enabled: bool):
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def benchmark(entries: Sequence[Entry],
              shape: Tuple[int, int],
              batch_size: int = 1,
              part: str = 'model',
              device: str = 'cpu',
              warmup: int = 3,
              repeats: int = 10,
              amp: bool = False,
              cuda_graph: bool = False,
              compile: Optional[Dict] = None,
              onnx: bool = False,
              log: Callable[[str], None] = print,
              profile: bool = False,
              cudnn_benchmark: Optional[bool] = None) -> List[Result]:
    """Measure every entry on the same random input; ratios to entry 0.

    With ``cuda_graph`` each entry's forward is timed as CUDA-graph replays
    (:func:`cuda_graphed`; ``part`` 'backbone' or 'features'). With
    ``compile`` (``torch.compile`` options,
    :func:`~cait_mm.engine.compile.compile_options`) every entry's backbone
    (and, beyond ``part='backbone'``, neck and decode head) is compiled
    after its operators are counted, so compiled rows compare with compiled
    rows; the warm-up runs compile. With ``onnx`` every entry's ``part``
    (backbone, features or a segmentor's network) is exported to ONNX and
    timed in ONNX Runtime on the CPU, with as many threads as torch.
    With ``profile`` one more call of each row, after the timing, runs
    under ``torch.profiler`` (:func:`profile_call`): where the time goes,
    e.g. whether a GPU waits for the host. ``cudnn_benchmark`` (default:
    the configs', :func:`runtime_cudnn_benchmark`) holds while the rows
    run.
    """
    if repeats < 1:
        raise ValueError(f'repeats={repeats}: timing needs at least one '
                         'timed call per entry')
    if onnx and (part == 'model' or not device == 'cpu' or compile
                 or cuda_graph):
        raise ValueError("onnx times part 'backbone', 'features' or "
                         "'network' on the CPU, without compile or "
                         'cuda_graph')
    if compile is not None and cuda_graph:
        raise ValueError("compile and cuda_graph: use compile's mode="
                         "'reduce-overhead' (CUDA graphs) instead")
    if compile is not None and warmup < 1:
        raise ValueError('compile needs warmup >= 1: the first call '
                         'compiles')
    if part not in PARTS:
        raise ValueError(f'part must be one of {PARTS}, got {part!r}')
    if cuda_graph and (not device.startswith('cuda')
                       or part in ('model', 'network')):
        raise ValueError('cuda_graph needs a CUDA device and part '
                         "'backbone' or 'features' (heads with proposals "
                         'or post-processing are not capturable)')
    if cudnn_benchmark is None:
        cudnn_benchmark = runtime_cudnn_benchmark(entries)
    torch.manual_seed(0)
    inputs = torch.randn(batch_size, 3, *shape, device=device)
    runs, results, models = [], [], []
    for entry in entries:
        model = build_model(entry.config, entry.overrides, device,
                            entry.checkpoint)
        run, counted = part_fn(model, part, batch_size, shape)
        children = dict(model.named_children()) if part in (
            'model', 'network') else {}
        children.pop('data_preprocessor', None)
        flops, _, by_part = count_flops_by_module(counted, (inputs[:1], ),
                                                  children)
        params = count_params(model.backbone if part == 'backbone' else
                              model)
        parts = {name: (by_part[name], count_params(child))
                 for name, child in children.items()}
        results.append(
            Result(entry.name, part, flops, params, 0., 0., parts=parts))
        runs.append(run)
        models.append(model)
        log(f'built {entry.name}: {flops / 1e9:.2f} GFLOPs/image, '
            f'{results[-1].params / 1e6:.2f} M params')
    autocast = torch.autocast(
        device_type='cuda' if device.startswith('cuda') else 'cpu',
        dtype=torch.float16 if device.startswith('cuda') else torch.bfloat16,
        enabled=amp)
    times: List[List[float]] = [[] for _ in entries]
    with torch.no_grad(), autocast, _cudnn_benchmark(cudnn_benchmark):
        for result, run in zip(results, runs):
            run(inputs)  # shape tables are built once, on the first call
            ops = count_ops(lambda: run(inputs))  # eager, before any graph
            result.ops, result.kernels = ops.top_level, ops.kernels
        if cuda_graph:
            runs = [cuda_graphed(run, inputs) for run in runs]
        if onnx:
            runs = _onnx_runs(models, part, inputs, log)
        if compile is not None:
            _allow_recompiles(4 * len(models))
            for model in models:
                compile_parts(model, ('backbone', ) if part == 'backbone'
                              else COMPILED_PARTS, **compile)
        for run in runs:
            for _ in range(warmup):
                run(inputs)
        for rep in range(repeats):
            for i, run in enumerate(runs):
                _sync(device)
                start = time.perf_counter()
                run(inputs)
                _sync(device)
                times[i].append(time.perf_counter() - start)
            log(f'repeat {rep + 1}/{repeats}: ' + ', '.join(
                f'{t[-1] * 1e3:.1f} ms' for t in times))
        if profile:
            for result, run in zip(results, runs):
                result.profile, result.busy_ms, result.launches = \
                    profile_call(lambda: run(inputs), device)
    for result, measured in zip(results, times):
        median = statistics.median(measured)
        result.latency_ms = median * 1e3
        result.images_per_s = batch_size / median
    for result in results:
        result.speedup = result.images_per_s / results[0].images_per_s
        result.flops_ratio = results[0].flops / max(result.flops, 1)
    return results


def _allow_recompiles(count: int) -> None:
    """Let Dynamo compile one forward ``count`` times: the entries'
    backbones share ``CAITViT.forward``, whose compiled versions count
    against one limit (8 by default), past which Dynamo runs it eagerly
    without an error and a compiled row would time eager code."""
    import torch._dynamo.config as dynamo
    for name in ('recompile_limit', 'cache_size_limit'):
        if hasattr(dynamo, name):
            setattr(dynamo, name, max(getattr(dynamo, name), count))


def profile_call(fn: Callable[[], object], device: str,
                 rows: int = 15) -> Tuple[str, float, int]:
    """``fn()`` once under ``torch.profiler``: a table of the operators
    and kernels with the most own time (device time on CUDA, host time on
    the CPU), that time summed over kernels, ms, and the number of kernels
    (CUDA) or aten operators (CPU) run. A GPU's busy time against the
    call's wall time says whether it waits for the host."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler
    cuda = device.startswith('cuda')
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if cuda else [])
    _sync(device)
    with profiler(activities=activities) as prof:
        fn()
        _sync(device)
    key = 'self_device_time_total' if cuda else 'self_cpu_time_total'
    table = prof.key_averages().table(sort_by=key, row_limit=rows,
                                      max_name_column_width=60)
    if cuda:
        work = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    else:  # operators' own time, not that of the ops beneath them
        work = [e for e in prof.events() if e.name.startswith('aten::')]
    busy = sum(e.self_device_time_total if cuda else e.self_cpu_time_total
               for e in work)
    return table, busy / 1e3, len(work)


def _onnx_runs(models: Sequence[nn.Module], part: str,
               inputs: torch.Tensor, log: Callable[[str], None]
               ) -> List[Callable]:
    """Each model's ``part`` exported to ONNX and checked; callables that
    run it in ONNX Runtime."""
    import tempfile

    from cait_mm.deploy import (PartForward, check_onnx, export_onnx,
                                onnx_session, run_onnx)
    folder = tempfile.mkdtemp(prefix='cait_mm_onnx_')
    array = inputs.cpu().numpy()
    runs = []
    for i, model in enumerate(models):
        module = PartForward(model, part)
        path = export_onnx(module, inputs, f'{folder}/{i}.onnx')
        # rows run in turn: a session spinning after its run would slow
        # the next row's
        session = onnx_session(path, torch.get_num_threads(),
                               spinning=False)
        log(f'entry {i}: ONNX Runtime vs PyTorch max abs difference '
            f'{check_onnx(module, session, inputs):.1e}')
        runs.append(lambda _, session=session: run_onnx(session, array))
    return runs


def to_markdown(results: Sequence[Result], setting: str) -> str:
    lines = [
        f'{setting}', '',
        '| model | GFLOPs/img | FLOPs ratio | params (M) | ops | kernels '
        '| latency (ms) | images/s | speed-up |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
    ]
    for r in results:
        lines.append(f'| {r.name} | {r.flops / 1e9:.3g} | '
                     f'{r.flops_ratio:.2f}x | {r.params / 1e6:.2f} | '
                     f'{r.ops} | {r.kernels} | '
                     f'{r.latency_ms:.1f} | {r.images_per_s:.2f} | '
                     f'{r.speedup:.2f}x |')
    if any(r.busy_ms is not None for r in results):
        lines += [
            '', 'Profiled call (as timed): the device\'s busy time (CUDA: '
            'kernels; CPU: operators\' own time) and what it ran', '',
            '| model | latency (ms) | busy (ms) | busy share | launched |',
            '| --- | ---: | ---: | ---: | ---: |'
        ]
        for r in results:
            if r.busy_ms is not None:
                lines.append(
                    f'| {r.name} | {r.latency_ms:.2f} | {r.busy_ms:.2f} | '
                    f'{r.busy_ms / max(r.latency_ms, 1e-9):.0%} | '
                    f'{r.launches} |')
    names = list(dict.fromkeys(n for r in results for n in r.parts))
    if names:
        lines += [
            '', 'By part: GFLOPs/img / params (M) (a head used only in '
            'training has no FLOPs)', '',
            '| model | ' + ' | '.join(names) + ' |',
            '| --- |' + ' ---: |' * len(names)
        ]
        for r in results:
            cells = [
                '-' if n not in r.parts else
                f'{r.parts[n][0] / 1e9:.3g} / {r.parts[n][1] / 1e6:.2f}'
                for n in names
            ]
            lines.append(f'| {r.name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def to_json(results: Sequence[Result], setting: Dict) -> Dict:
    return dict(setting=setting, results=[asdict(r) for r in results])
