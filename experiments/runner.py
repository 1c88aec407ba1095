"""Run an experiment of this folder: its rows are data, this is the code.

    python experiments/runner.py EXPERIMENT --dataset {membrane,dubai}
        --data-root DIR [--work-dir DIR] [--rows NAME ...] [--seeds 0 1 2]
        [--no-skip] [--device cpu] [--shape 512 512] [--repeats 10]

EXPERIMENT is a Python file holding plain data (experiments/README.md):
``config``, a pattern of config paths (``{model}`` and ``{dataset}`` filled
per row), ``datasets``, ``arch`` and ``preset`` (the ViT and the ATME
preset whose block FLOPs ``flops='preset'`` means), ``metric`` and
``rows``, one dict per row:

- ``name``, ``model`` (fills ``{model}``), ``description``;
- ``reducer`` (train and test) or ``test_reducer`` (test only): the
  backbone's token reducer, ``dict(type=..., **settings)``, or
  ``dict(type=..., flops=TARGET, **for_flops_options)`` to have the reducer
  set for TARGET block FLOPs (a fraction, or ``'preset'``) through
  :func:`cait_mm.core.match_flops`;
- ``options`` (train and test) and ``test_options``: other
  ``--cfg-options``;
- ``reuse`` (test another row's checkpoint, no training), ``init_from``
  (train from another row's checkpoint: ``load_from``), ``export`` (test
  the exported compressed model).

An experiment with ``tables`` instead (experiments/gpu_speed.py) is a
list of benchmark tables: ``entries`` (label -> benchmark entry spec),
``tables`` (name -> the labels and the benchmark's options; ``c_`` names
are measured compiled), ``plan`` and ``quick`` (the order), ``test_py``
(tools/test.py runs on generated images), ``smoke`` (the tiny CPU
settings of ``--smoke``) and ``targets`` (ratios summary.md checks: each
``what``, ``tables``, ``rows`` and ``at_least``)::

    python experiments/runner.py EXPERIMENT [--out-dir DIR] [--quick]
        [--smoke] [--parallel 6] [--force] [--report]

Each row runs the user-facing tools (tools/train.py,
tools/deployment/export_compressed.py, tools/test.py) in subprocesses,
once per seed; then every row's first seed is timed in one process
(whole model, batch 1) as a ratio to the first row, with the benchmark's
own tables (:mod:`cait_mm.analysis.benchmark`). Writes results.md,
results.json and results.png (metric vs images/s) in the work dir (default
``work_dirs/real_DATASET``). Rows already trained there are reused unless
``--no-skip``; an interrupted training is resumed from its last
checkpoint, so a long experiment can run in sittings.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import runpy
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence

from cait_mm.analysis.benchmark import Entry, benchmark
from cait_mm.analysis.benchmark import to_markdown as speed_table
from cait_mm.analysis.plots import accuracy_speed_plot
from cait_mm.core import match_flops
from cait_mm.core.atme_schedules import schedule_flops
from cait_mm.core.spec import ARCHS
from cait_mm.utils.atomic_write import atomic_output, write_bytes, write_text

# the tools run from the repository this folder sits in
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
#: marker of a row whose training finished (in its train/ work dir)
TRAINED = 'TRAINED'
REDUCER = 'model.backbone.token_reducer'
ROW_KEYS = {'name', 'model', 'description', 'reducer', 'test_reducer',
            'options', 'test_options', 'reuse', 'init_from', 'export'}


@dataclass
class Row:
    """One row, resolved: a config to train (or the row whose checkpoint
    it reuses), the row whose trained checkpoint its training starts from
    (``init_from``: mmengine's ``load_from``; none: from scratch),
    overrides for training and testing (``options``) or for testing only
    (``test_options``), and whether the checkpoint is exported first."""
    name: str
    config: str
    description: str
    reuse: Optional[str] = None
    init_from: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)
    test_options: Dict[str, Any] = field(default_factory=dict)
    export: bool = False

    @property
    def all_test_options(self) -> Dict[str, Any]:
        return {**self.options, **self.test_options}


def load_experiment(path: str) -> Dict[str, Any]:
    """The public names of an experiment file (plain data)."""
    data = runpy.run_path(path)
    need = {'tables', 'entries', 'plan', 'device'} if 'tables' in data \
        else {'config', 'datasets', 'rows'}
    missing = need - set(data)
    if missing:
        raise ValueError(f'{path}: an experiment sets {sorted(missing)}')
    return {k: v for k, v in data.items() if not k.startswith('_')}


def grid_and_arch(experiment: Dict) -> tuple:
    """The test size's patch grid and the ViT's arch settings, where the
    experiment's FLOPs targets are met."""
    shape = experiment.get('flops_shape', (512, 512))
    return tuple(-(-s // 16) for s in shape), ARCHS[experiment['arch']]


def preset_flops(experiment: Dict) -> float:
    """Block FLOPs of the experiment's ATME preset at its test size."""
    grid, arch = grid_and_arch(experiment)
    return schedule_flops(experiment['preset'], grid, arch['embed_dims'],
                          arch['num_layers'], arch['mlp_ratio'])


def reducer_options(spec: Optional[Dict], experiment: Dict) -> Dict:
    """``--cfg-options`` that set the backbone's token reducer (on a dense
    config the dotted keys create it); a ``flops`` target is met with the
    reducer's own ``for_flops``."""
    if not spec:
        return {}
    spec = dict(spec)
    if 'flops' in spec:
        target = spec.pop('flops')
        if target == 'preset':
            target = preset_flops(experiment)
        kind = spec.pop('type')
        grid, arch = grid_and_arch(experiment)
        spec = match_flops(target, grid, arch, [kind],
                           {kind: spec})[0].config
    return {f'{REDUCER}.{k}': v for k, v in spec.items()}


def rows_for(experiment: Dict, dataset: str) -> List[Row]:
    """The experiment's rows on ``dataset``, resolved."""
    if dataset not in experiment['datasets']:
        raise ValueError(f'dataset "{dataset}" is not one of '
                         f'{experiment["datasets"]}')
    preset = preset_flops(experiment) if 'preset' in experiment else None
    rows = []
    for spec in experiment['rows']:
        unknown = set(spec) - ROW_KEYS
        if unknown:
            raise ValueError(f'row {spec.get("name")}: unknown keys '
                             f'{sorted(unknown)}; rows take '
                             f'{sorted(ROW_KEYS)}')
        rows.append(Row(
            name=spec['name'],
            config=experiment['config'].format(model=spec['model'],
                                               dataset=dataset),
            description=spec['description'].format(preset=preset),
            reuse=spec.get('reuse'), init_from=spec.get('init_from'),
            options={**reducer_options(spec.get('reducer'), experiment),
                     **spec.get('options', {})},
            test_options={
                **reducer_options(spec.get('test_reducer'), experiment),
                **spec.get('test_options', {})},
            export=spec.get('export', False)))
    names = [r.name for r in rows]
    for row in rows:
        for other in (row.reuse, row.init_from):
            if other is not None and other not in names[:names.index(
                    row.name)]:
                raise ValueError(f'row {row.name} needs row {other} '
                                 'before it')
    return rows


def with_seeds(rows: Sequence[Row], seeds: Sequence[int]) -> List[Row]:
    """Every row once per seed (``randomness.seed``): seed 0, the configs'
    own, keeps the row's name; seed ``s`` appends ``-seed{s}``, and a row
    that reuses a checkpoint or starts from one takes that seed's."""
    expanded = []
    for seed in seeds:
        suffix = '' if seed == 0 else f'-seed{seed}'
        for row in rows:
            options = dict(row.options)
            if seed != 0 and row.reuse is None:
                options['randomness.seed'] = seed
            expanded.append(
                replace(row, name=row.name + suffix, options=options,
                        reuse=None if row.reuse is None else
                        row.reuse + suffix,
                        init_from=None if row.init_from is None else
                        row.init_from + suffix))
    return expanded


def base_name(name: str) -> str:
    """A row's name without its seed suffix."""
    return re.sub(r'-seed\d+$', '', name)


def per_class(test_log: str) -> Dict[str, float]:
    """The per-class IoU of the last table mmseg's metric printed."""
    rows = {}
    with open(test_log) as f:
        lines = f.read().splitlines()
    starts = [i for i, line in enumerate(lines)
              if line.endswith('per class results:')]
    for line in lines[starts[-1]:] if starts else []:
        cells = [c.strip() for c in line.split('|')[1:-1]]
        if len(cells) >= 2 and cells[0] != 'Class':
            rows[cells[0]] = float(cells[1])
        elif rows and not line.startswith(('|', '+')):
            break
    return rows


def _run(args: Sequence[str], log: str,
         prefix: Sequence[str] = ()) -> None:
    """``python ARGS`` in the repository (after ``prefix``, e.g. a
    ``taskset``), its output added to ``log``."""
    with open(log, 'a') as f:  # a resumed training adds to its log
        proc = subprocess.run([*prefix, sys.executable, *args], cwd=REPO,
                              stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f'{" ".join(args)} failed; see {log}')


def _last_metrics(work_dir: str) -> Dict:
    logs = sorted(
        osp.join(work_dir, d, f'{d}.json') for d in os.listdir(work_dir)
        if osp.isfile(osp.join(work_dir, d, f'{d}.json')))
    if not logs:
        raise FileNotFoundError(f'no metrics json under {work_dir}')
    with open(logs[-1]) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def _format(value) -> str:
    """A value as ``--cfg-options`` parses it back."""
    if isinstance(value, (tuple, list)):
        inner = ','.join(_format(v) for v in value)
        return f'({inner})' if isinstance(value, tuple) else f'[{inner}]'
    return str(value)


def cfg_options(data_root: Optional[str], extra: Dict[str, Any]) -> List[str]:
    """``--cfg-options`` arguments: the data root of every loader, then
    ``extra``."""
    roots = [] if data_root is None else [
        f'{loader}.dataset.data_root={data_root}' for loader in LOADERS
    ]
    return roots + [f'{k}={_format(v)}' for k, v in extra.items()]


def _trained(work_dir: str, name: str) -> str:
    last = osp.join(work_dir, name, 'train', 'last_checkpoint')
    if not osp.isfile(last):
        raise FileNotFoundError(f'row "{name}" has not been trained in '
                                f'{work_dir}: run it first')
    with open(last) as f:
        return f.read().strip()


def run_rows(rows: Sequence[Row], data_root: str, work_dir: str,
             skip_existing: bool = True, log=print) -> List[Dict]:
    """Train (unless reused or already done), export, test every row.

    Returns one dict per row: name, description, config, checkpoint, test
    overrides and the metrics ``tools/test.py`` logged.
    """
    results = []
    for row in rows:
        row_dir = osp.join(work_dir, row.name)
        os.makedirs(row_dir, exist_ok=True)
        train_dir = osp.join(row_dir, 'train')
        # written when tools/train.py returns: a run that died leaves only
        # its last checkpoint, and is resumed from it
        trained = osp.join(train_dir, TRAINED)
        if row.reuse is None and not (skip_existing
                                      and osp.isfile(trained)):
            resume = skip_existing and osp.isfile(
                osp.join(train_dir, 'last_checkpoint'))
            log(f'[{row.name}] ' + ('resuming' if resume else 'training') +
                f' {row.config}')
            options = dict(row.options)
            if row.init_from is not None:
                options['load_from'] = _trained(work_dir, row.init_from)
            _run([
                'tools/train.py', row.config, '--work-dir', train_dir,
                *(['--resume'] if resume else []), '--cfg-options',
                *cfg_options(data_root, options)
            ], osp.join(row_dir, 'train.log'))
            write_text(trained, _trained(work_dir, row.name) + '\n')
        ckpt = _trained(work_dir, row.reuse or row.name)
        if row.export:
            exported = osp.join(row_dir, 'compressed.pth')
            log(f'[{row.name}] exporting {ckpt}')
            export = ['tools/deployment/export_compressed.py', row.config,
                      ckpt, exported]
            if row.options:
                export += ['--cfg-options', *cfg_options(None, row.options)]
            _run(export, osp.join(row_dir, 'export.log'))
            ckpt = exported
        test_dir = osp.join(row_dir, 'test')
        log(f'[{row.name}] testing {ckpt}')
        _run([
            'tools/test.py', row.config, ckpt, '--work-dir', test_dir,
            '--cfg-options', *cfg_options(data_root, row.all_test_options)
        ], osp.join(row_dir, 'test.log'))
        metrics = _last_metrics(test_dir)
        log(f'[{row.name}] {metrics}')
        results.append(
            dict(asdict(row), checkpoint=ckpt, metrics=metrics,
                 per_class=per_class(osp.join(row_dir, 'test.log'))))
    return results


def bench_entries(rows: Sequence[Row],
                  results: Sequence[Dict]) -> List[Entry]:
    """What each row runs at test time, as benchmark entries: an exported
    row is rebuilt from its file, pruned heads included
    (``configure_compressed_backbone``, as tools/test.py does)."""
    return [
        Entry(row.config, dict(row.all_test_options), label=row.name,
              checkpoint=r['checkpoint'] if row.export else None)
        for row, r in zip(rows, results)
    ]


def summarise(results: Sequence[Dict], metric: str) -> List[Dict]:
    """Rows over their seeds, in the order they first appear: the metric's
    mean, its sample standard deviation and the seed count, and the mean
    per-class IoU."""
    groups: Dict[str, List[Dict]] = {}
    for r in results:
        groups.setdefault(base_name(r['name']), []).append(r)
    summary = []
    for name, runs in groups.items():
        values = [r['metrics'][metric] for r in runs]
        classes = runs[0].get('per_class') or {}
        summary.append(dict(
            name=name, description=runs[0]['description'],
            mean=statistics.fmean(values),
            std=statistics.stdev(values) if len(values) > 1 else 0.,
            seeds=len(values),
            per_class={c: statistics.fmean(r['per_class'][c] for r in runs)
                       for c in classes}))
    return summary


def accuracy_table(summary: Sequence[Dict], metric: str, title: str) -> str:
    """The rows' metric (mean +- std over seeds, share of the first row's),
    then their per-class IoU."""
    dense = summary[0]['mean']
    lines = [title, '', f'| row | what | {metric} | of dense |',
             '| --- | --- | ---: | ---: |']
    for r in summary:
        spread = f' +- {r["std"]:.2f} ({r["seeds"]} seeds)' \
            if r['seeds'] > 1 else ''
        lines.append(
            f'| {r["name"]} | {r["description"]} | {r["mean"]:.2f}{spread} '
            f'| {100 * r["mean"] / dense:.1f}% |')
    classes = list(summary[0]['per_class'])
    if classes:
        lines += ['', '| row | ' + ' | '.join(classes) + ' |',
                  '| --- |' + ' ---: |' * len(classes)]
        lines += [f'| {r["name"]} | ' + ' | '.join(
            f'{r["per_class"].get(c, float("nan")):.2f}' for c in classes) +
            ' |' for r in summary]
    return '\n'.join(lines) + '\n'


def run_experiment(rows: Sequence[Row], data_root: str, work_dir: str,
                   shape, device: str = 'cpu', repeats: int = 10,
                   metric: str = 'mIoU', skip_existing: bool = True,
                   title: str = '', seeds: Sequence[int] = (0, ),
                   log=print) -> str:
    """Rows end to end for every seed, then the speed of each row (its
    first seed's); writes ``results.{md,json,png}`` in ``work_dir`` and
    returns the Markdown."""
    runs = with_seeds(rows, seeds)
    results = run_rows(runs, data_root, work_dir, skip_existing, log)
    first = results[:len(rows)]
    # --repeats 0: accuracy only (e.g. while the machine is busy)
    speed = benchmark(bench_entries(runs[:len(rows)], first), tuple(shape),
                      1, 'model', device, warmup=3, repeats=repeats,
                      log=log) if repeats else []
    setting = dict(part='model', shape=list(shape), batch_size=1,
                   device=device, repeats=repeats)
    heading = (f'{title} | seeds {list(seeds)}')
    summary = summarise(results, metric)
    text = accuracy_table(summary, metric, heading) + '\n' + (speed_table(
        speed, f'Speed: whole model, {shape[0]}x{shape[1]}, batch 1, '
        f'{device}, median of {repeats}; ratios to {rows[0].name}')
        if speed else 'Speed: not timed (--repeats 0).\n')
    write_text(osp.join(work_dir, 'results.md'), text)
    write_text(
        osp.join(work_dir, 'results.json'),
        json.dumps(
            dict(rows=results, summary=summary,
                 speed=[asdict(s) for s in speed], setting=setting,
                 seeds=list(seeds)), indent=2))
    if not speed:
        return text
    accuracy_speed_plot(
        [(r['name'], s.images_per_s, r['mean'], r['std'])
         for r, s in zip(summary, speed)],
        'images/s (whole model, same run)', metric, heading,
        osp.join(work_dir, 'results.png'))
    return text


def _parse_options(options: Sequence[str]) -> Dict[str, List[str]]:
    """``['--shape', '64', '64', '--bound']`` as ``{'--shape': ['64',
    '64'], '--bound': []}`` (in order)."""
    parsed: Dict[str, List[str]] = {}
    for item in options:
        if item.startswith('--'):
            parsed[item] = []
        else:
            parsed[next(reversed(parsed))].append(item)
    return parsed


def _join_options(parsed: Dict[str, List[str]]) -> List[str]:
    return [x for key, values in parsed.items() for x in (key, *values)]


#: benchmark options that add rows to a table, not set how it is measured
ROW_OPTIONS = ('--bound', '--flops-target', '--reducers')


def table_steps(experiment: Dict, smoke: bool = False) -> Dict[str, Dict]:
    """Every table as what the benchmark tool runs: ``entries`` (specs),
    ``labels``, ``options`` (the setting: shape, batch, part, counts),
    ``rows`` (options that add rows: ``--flops-target``, ``--reducers``,
    ``--bound``) and ``compiled``."""
    device = experiment['smoke']['device'] if smoke else experiment['device']
    steps = {}
    for name, table in experiment['tables'].items():
        labels = [k for k in table['entries'] if device == 'cuda'
                  or k not in experiment.get('cuda_only', ())]
        options = _parse_options(table['options'])
        if smoke:
            options.update({k: list(v) for k, v in
                            experiment['smoke']['options'].items()
                            if k in options})
        steps[name] = dict(
            entries=[experiment['entries'][k] for k in labels],
            labels=labels,
            options=_join_options({k: v for k, v in options.items()
                                   if k not in ROW_OPTIONS}),
            rows=_join_options({k: v for k, v in options.items()
                                if k in ROW_OPTIONS}),
            compiled=name.startswith('c_'), device=device)
    return steps


def benchmark_command(step: Dict, experiment: Dict, out_dir: str, name: str,
                      smoke: bool = False) -> List[str]:
    """The benchmark tool's arguments that measure one table."""
    extra = list(experiment.get('options', []))
    if step['compiled']:
        extra.append('--compile')
        if smoke:
            extra += experiment['smoke'].get('compile_options', [])
    return ['tools/analysis_tools/benchmark.py', *step['entries'],
            '--labels', *step['labels'], *step['options'], *step['rows'],
            *extra, '--device', step['device'], '--out-dir', out_dir,
            '--name', name]


def warm_commands(step: Dict, experiment: Dict, warm_dir: str, name: str,
                  smoke: bool = False) -> List[List[str]]:
    """One short compiled run per row of a compiled table, each in a
    process of its own: inductor's caches are on disk, so the table then
    finds its graphs compiled (a minute or more each)."""
    setting = _parse_options(step['options'])
    setting.update({'--warmup': ['1'], '--repeats': ['1']})
    extra = ['--amp'] if '--amp' in experiment.get('options', []) else []
    if smoke:
        extra += experiment['smoke'].get('compile_options', [])
    base = [*_join_options(setting), *extra, '--compile', '--device',
            step['device'], '--out-dir', warm_dir]
    commands = [['tools/analysis_tools/benchmark.py', entry, *base,
                 '--name', f'{name}-{i}']
                for i, entry in enumerate(step['entries'])]
    rows = _parse_options(step['rows'])
    for kind in rows.get('--reducers', []):  # a process per matched row
        commands.append([
            'tools/analysis_tools/benchmark.py', step['entries'][0], *base,
            '--flops-target', *rows['--flops-target'], '--reducers', kind,
            '--name', f'{name}-{kind}'])
    return commands


def make_test_inputs(work: str, count: int, specs: Dict[str, str]) -> str:
    """ADE20K-layout 512x512 images and labels for tools/test.py, and a
    random-weight checkpoint per entry; returns the data root."""
    import cv2
    import numpy as np
    import torch

    from cait_mm.analysis.model_from_config import build_model
    root = osp.join(work, 'ade')
    rng = np.random.default_rng(0)
    for sub in ('images', 'annotations'):
        os.makedirs(osp.join(root, sub, 'validation'), exist_ok=True)
    for i in range(count):
        # smooth content (JPEG sizes of photos, not of noise) and regions
        low = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        img = cv2.resize(low, (512, 512), interpolation=cv2.INTER_CUBIC)
        label = cv2.resize(rng.integers(1, 151, (8, 8), dtype=np.uint8),
                           (512, 512), interpolation=cv2.INTER_NEAREST)
        write_bytes(f'{root}/images/validation/{i:04d}.jpg',
                    cv2.imencode('.jpg', img)[1].tobytes())
        write_bytes(f'{root}/annotations/validation/{i:04d}.png',
                    cv2.imencode('.png', label)[1].tobytes())
    for label, spec in specs.items():
        path = osp.join(work, f'{label}.pth')
        if not osp.isfile(path):
            entry = Entry.parse(spec)
            model = build_model(entry.config, entry.overrides)
            with atomic_output(path) as tmp_path:
                torch.save(dict(state_dict=model.state_dict(), meta=dict()),
                           tmp_path)
    return root


def test_command(spec: str, checkpoint: str, data_root: str, work_dir: str,
                 images: int, warmup: int, device_options: Sequence[str]
                 ) -> List[str]:
    """tools/test.py compiled, in fp16, on ``images`` generated images,
    with its speed after ``warmup`` batches."""
    entry = Entry.parse(spec)
    return ['tools/test.py', entry.config, checkpoint, '--compile', '--amp',
            *device_options, '--work-dir', work_dir, '--speed-warmup',
            str(warmup), '--cfg-options',
            f'test_dataloader.dataset.data_root={data_root}',
            'model.pretrained=None',
            f'test_dataloader.dataset.indices={images}',
            *(f'{k}={_format(v)}' for k, v in entry.overrides.items())]


def test_table(runs: Sequence[Dict], setting: Dict) -> str:
    """tools/test.py's images/s per entry, as ratios to the first."""
    lines = [f'tools/test.py --compile --amp, 512x512 images from files, '
             f'batch 1 | {setting["device_name"]} | {setting["images"]} '
             f'images, the first {setting["warmup_batches"]} batches left '
             'out', '', '| model | images/s | speed-up |',
             '| --- | ---: | ---: |']
    lines += [f'| {r["name"]} | {r["images_per_s"]:.1f} | '
              f'{r["speedup"]:.2f}x |' for r in runs]
    return '\n'.join(lines) + '\n'


def run_tables(experiment: Dict, out_dir: str, quick: bool = False,
               smoke: bool = False, parallel: int = 6, force: bool = False,
               log=print) -> str:
    """The experiment's plan: benchmark tables (compiled ones compiled
    ahead in parallel processes while the eager ones run), tools/test.py
    runs and the CUDA tests; writes each table's Markdown and JSON (the
    benchmark's format), ``summary.md``, and returns the summary."""
    import concurrent.futures

    import torch
    steps = table_steps(experiment, smoke)
    plan = experiment['quick' if quick else 'plan']
    device = experiment['smoke']['device'] if smoke else experiment['device']
    if device == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('no CUDA device: this experiment measures the '
                           'GPU (--smoke checks its plan on the CPU)')
    work = osp.join(out_dir, 'work')
    os.makedirs(osp.join(work, 'warm'), exist_ok=True)
    test = experiment.get('test_py') or dict(entries=[], images=0, warmup=0)
    images = experiment['smoke']['images'] if smoke else test['images']
    warmup = experiment['smoke']['warmup'] if smoke else test['warmup']
    compile_options = experiment['smoke'].get('compile_options', []) \
        if smoke else []
    specs = {k: experiment['entries'][k] for k in test['entries']}

    def done(name):
        return not force and osp.isfile(osp.join(out_dir, name))

    def run(args, logfile, prefix=()):
        try:
            _run(args, logfile, prefix)
            return True
        except RuntimeError as e:
            log(f'FAILED: {e}')
            return False

    # the eager tables on two cores, the compiling processes on the rest
    cores = os.cpu_count() or 1
    pin = ['taskset', '-c', '0,1'] if cores >= 8 else []
    pin_rest = ['taskset', '-c', f'2-{cores - 1}'] if cores >= 8 else []
    warm = []
    for name in plan:
        if name == 'test_py' and not done('test_compile.json'):
            data_root = make_test_inputs(work, images, specs)
            warm += [test_command(
                spec, osp.join(work, f'{label}.pth'), data_root,
                osp.join(work, 'warm', f'test-{label}'), warmup + 2, 1,
                compile_options) for label, spec in specs.items()]
        elif name in steps and steps[name]['compiled'] and not done(
                f'{name}.json'):
            warm += warm_commands(steps[name], experiment,
                                  osp.join(work, 'warm'), name, smoke)
    pool = concurrent.futures.ThreadPoolExecutor(max(parallel, 1))
    warming = [pool.submit(run, c, osp.join(work, 'warm', f'{i}.log'),
                           pin_rest) for i, c in enumerate(warm)]
    log(f'compiling ahead: {len(warm)} processes, {parallel} at a time')
    warmed = False
    for name in plan:
        if not name.startswith('e_') and not warmed:
            log('waiting for the compiling processes')
            failed = sum(not f.result() for f in warming)
            log(f'compiled ahead ({failed} failed: they compile again in '
                'their tables)')
            warmed = True
        if name == 'test_py':
            if done('test_compile.json'):
                continue
            data_root = make_test_inputs(work, images, specs)
            runs = []
            for label, spec in specs.items():
                test_dir = osp.join(work, f'test-{label}')
                log(f'tools/test.py --compile --amp: {label}')
                if run(test_command(spec, osp.join(work, f'{label}.pth'),
                                    data_root, test_dir, images, warmup,
                                    compile_options),
                       osp.join(out_dir, f'test_{label}.log')):
                    runs.append(dict(name=label, **_last_metrics(test_dir)))
            if runs and runs[0]['name'] == test['entries'][0]:
                for r in runs:
                    r['speedup'] = r['images_per_s'] / runs[0][
                        'images_per_s']
                setting = dict(
                    tool='tools/test.py --compile --amp', device=device,
                    device_name=torch.cuda.get_device_name()
                    if device == 'cuda' else 'cpu', mode='compiled',
                    images=images, warmup_batches=warmup, shape=[512, 512],
                    batch_size=1, torch=torch.__version__)
                write_text(osp.join(out_dir, 'test_compile.json'),
                           json.dumps(dict(setting=setting, results=runs),
                                      indent=2))
                write_text(osp.join(out_dir, 'test_compile.md'),
                           test_table(runs, setting))
            continue
        if done(f'{name}.json'):
            log(f'{name}: in {out_dir} already')
            continue
        log(f'table {name}')
        args = benchmark_command(steps[name], experiment, out_dir, name,
                                 smoke)
        run(args, osp.join(out_dir, f'{name}.log'), () if warmed else pin)
    pool.shutdown()
    if device == 'cuda' and not done('cuda_tests.txt'):
        run(['-m', 'pytest', '-q', '-p', 'no:cacheprovider',
             *experiment.get('cuda_tests', [])],
            osp.join(out_dir, 'cuda_tests.txt'))
    return write_summary(experiment, out_dir)


def _measured(out_dir: str) -> Dict[str, Dict]:
    """table -> its setting and ``ratios`` (row -> ratio to the table's
    first row), of the tables written in ``out_dir``."""
    tables = {}
    for path in sorted(glob.glob(osp.join(out_dir, '[ec]_*.json'))) + \
            glob.glob(osp.join(out_dir, 'test_compile.json')):
        with open(path) as f:
            data = json.load(f)
        tables[osp.basename(path)[:-5]] = dict(
            data['setting'],
            ratios={r['name']: r['speedup'] for r in data['results']})
    return tables


def target_rows(targets: Sequence[Dict],
                ratios: Dict[str, Dict[str, float]]) -> List[Dict]:
    """One row per target and row: the table it was read from (the first
    of the target's tables that was measured), the ratio (``'A / B'``: A's
    over B's) and whether it is at least the target's; ``None`` where it
    was not measured."""
    rows = []
    for target in targets:
        table = next((t for t in target['tables'] if t in ratios), None)
        for row in target['rows']:
            names = [n.strip() for n in row.split(' / ')]
            values = [ratios.get(table, {}).get(n) for n in names]
            value = None if None in values else (
                values[0] / values[1] if len(values) == 2 else values[0])
            rows.append(dict(what=target['what'], table=table, row=row,
                             value=value, at_least=target['at_least'],
                             met=None if value is None else
                             value >= target['at_least']))
    return rows


def write_summary(experiment: Dict, out_dir: str) -> str:
    """``summary.md`` of the tables in ``out_dir``: every table's ratios,
    then the experiment's ``targets``, each met or missed; returns it."""
    measured = _measured(out_dir)
    lines = [f'- {name} ({t["device_name"]}, {t["mode"]}): ' + ', '.join(
        f'{row} {ratio:.2f}x' for row, ratio in t['ratios'].items())
        for name, t in measured.items()]
    devices = sorted({t['device'] for t in measured.values()})
    if experiment.get('targets') and devices not in (
            [], [experiment['device']]):
        lines += ['', f'Targets not checked: measured on {devices}, they '
                  f'are for {experiment["device"]}.']
    elif experiment.get('targets'):
        lines += ['', '| target | table | row | measured | at least | |',
                  '| --- | --- | --- | ---: | ---: | --- |']
        for t in target_rows(experiment['targets'], {
                name: t['ratios'] for name, t in measured.items()}):
            value, verdict = ('not measured', '') if t['value'] is None \
                else (f'{t["value"]:.2f}x', 'met' if t['met'] else
                      '**missed**')
            lines.append(f'| {t["what"]} | {t["table"] or "-"} | {t["row"]} '
                         f'| {value} | {t["at_least"]}x | {verdict} |')
    summary = '\n'.join(lines) + '\n'
    write_text(osp.join(out_dir, 'summary.md'), summary)
    return summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('experiment', help='an experiment file')
    parser.add_argument('--dataset', help='rows: the dataset')
    parser.add_argument('--data-root',
                        help='rows: the converted dataset (mmseg layout)')
    parser.add_argument('--out-dir', help='tables: where they are written '
                        '(default: work_dirs/EXPERIMENT)')
    parser.add_argument('--quick', action='store_true',
                        help='tables: the shorter plan')
    parser.add_argument('--smoke', action='store_true',
                        help='tables: the plan tiny, on the CPU')
    parser.add_argument('--parallel', type=int, default=6,
                        help='tables: compiling processes at a time')
    parser.add_argument('--force', action='store_true',
                        help='tables: measure the tables already written')
    parser.add_argument('--report', action='store_true',
                        help='tables: measure nothing, write summary.md '
                        '(ratios, targets met or missed) from the tables '
                        'in --out-dir')
    parser.add_argument('--work-dir', help='default: work_dirs/real_DATASET')
    parser.add_argument('--rows', nargs='+', help='subset of the rows')
    parser.add_argument('--no-skip', action='store_true',
                        help='retrain rows that already have a checkpoint')
    parser.add_argument('--device', default='cpu', help='for the timing')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512))
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='train every row once per seed (the table '
                        'gives mean and spread)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    experiment = load_experiment(args.experiment)
    if 'tables' in experiment:
        out_dir = args.out_dir or osp.join('work_dirs', osp.splitext(
            osp.basename(args.experiment))[0])
        if args.report:
            print(write_summary(experiment, osp.abspath(out_dir)))
            return
        print(run_tables(experiment, osp.abspath(out_dir), args.quick,
                         args.smoke, args.parallel, args.force))
        return
    if not (args.dataset and args.data_root):
        raise SystemExit(f'{args.experiment} has rows: give --dataset and '
                         '--data-root')
    rows = rows_for(experiment, args.dataset)
    if args.rows:
        unknown = set(args.rows) - {r.name for r in rows}
        if unknown:
            raise ValueError(f'unknown rows {sorted(unknown)}; rows: '
                             f'{[r.name for r in rows]}')
        rows = [r for r in rows if r.name in args.rows]
    work_dir = args.work_dir or f'work_dirs/real_{args.dataset}'
    os.makedirs(work_dir, exist_ok=True)
    text = run_experiment(
        rows, osp.abspath(args.data_root), osp.abspath(work_dir),
        args.shape, args.device, args.repeats,
        metric=experiment.get('metric', 'mIoU'),
        skip_existing=not args.no_skip,
        title=experiment.get('title', '{dataset}').format(
            dataset=args.dataset), seeds=args.seeds)
    print(text)


if __name__ == '__main__':
    main()
