"""Dense vs CAIT vs TPS vs the peers on a real dataset, end to end.

    python tools/real_data_experiment.py {membrane,dubai} --data-root DIR
        [--work-dir DIR] [--rows NAME ...] [--no-skip] [--device cpu]
        [--shape 512 512] [--repeats 10] [--seeds 0 1 2]

Prepare the data first (docs/real_data.md), e.g.
    python tools/dataset_converters/isbi_membrane.py --src SRC --out DIR

Rows, all with the CPU recipe (DeiT-T from scratch on 256x256 crops, 600
iterations; same seed, schedule, crops and initialisation): dense;
cait-atme (trained with ATME); atme-training-free (the dense checkpoint,
ATME at test time); tps (trained with TPS); tps-training-free;
cait-atme-cdcp (ATME + CDCP, exported, evaluated from the export);
cait-atme-cdcp-whole (the same with CDCP on the UperNet head too) and
cait-atme-cdcp-whole-25 (a quarter of the head's channels instead of half);
cait-atme-cdcp-whole-ft (the dense checkpoint of the same seed fine-tuned
with ATME + CDCP on backbone and head, the recipe's schedule again) and
cait-atme-cdcp-whole-ft-lr1e-4 (the same at a tenth of the learning rate)
and cait-atme-cdcp-whole-ft-early (the pruning ramp over iterations 0-300)
and cait-atme-cdcp-whole-ft-long (1200 iterations, ramp 0-600) with its
control dense-ft-long (the dense checkpoint trained as long);
cait-atme-30 and atme-30-training-free (ATME at 30% of the block FLOPs,
trained or at test time only); and the comparison at equal block FLOPs
with the peers (tools/analysis_tools/match_flops.py): tps-matched, tome, evit trained at
the ATME preset's FLOPs, tps-matched-, tome-, evit-training-free at the
preset's, atme-, tps-, tome-, evit-35-training-free at 35%. Each row runs
tools/train.py, tools/deployment/export_compressed.py and tools/test.py, once per
--seeds (the table gives each row's mean and spread, and its per-class
IoU); then all rows are timed in one process (whole model, batch 1), as
ratios to dense. Writes results.md, results.json and results.png (mIoU vs
images/s) in the work dir; rows already trained there are reused unless
--no-skip, and a training that was interrupted is resumed from its last
checkpoint, so a long comparison can be run in sittings.
"""
import argparse
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence

from cait_mm.analysis.benchmark import Entry, benchmark
from cait_mm.core import TOKEN_REDUCERS
from cait_mm.core.atme_schedules import schedule_flops
from cait_mm.utils.checkpoint_files import load_local_checkpoint

# The rows run the user-facing tools (tools/train.py, tools/test.py,
# tools/deployment/export_compressed.py) in subprocesses, from the repository this tool
# sits in, so the experiment exercises exactly what users run; speed is
# measured afterwards for all rows in one process, as ratios to the first.
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
#: marker of a row whose training finished (in its train/ work dir)
TRAINED = 'TRAINED'


@dataclass
class Row:
    """One row: a config to train (or the row whose checkpoint it reuses),
    the row whose trained checkpoint its training starts from
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


# 30% of DeiT-T's block FLOPs at 512x512 (tools/analysis_tools/atme_schedule.py --arch
# deit-t --target 0.3): full merges in blocks 2-5 leave a quarter of each
# side, what the whole-UperNet speed target of the ATME issue needs.
ATME_T_30 = [(2, 'h', 1.0), (3, 'v', 1.0), (4, 'h', 1.0), (5, 'v', 1.0)]


def reducer(**settings) -> Dict[str, Any]:
    """``--cfg-options`` that set the backbone's token reducer; on a dense
    config the dotted keys create it (``type`` then names the reducer)."""
    return {
        f'model.backbone.token_reducer.{k}': v
        for k, v in settings.items()
    }


def matched(kind: str, target: float) -> Dict[str, Any]:
    """The settings of reducer ``kind`` for ``target`` block FLOPs of the
    CPU recipe's DeiT-T at its 512x512 test size (tools/analysis_tools/match_flops.py):
    ToMe by its size-independent ``ratio``, TPS and EViT by keep ratio,
    ATME and ATMEAdaptive by schedule."""
    knob = dict(knob='ratio') if kind == 'ToMe' else {}
    return TOKEN_REDUCERS[kind].for_flops(target, TEST_GRID, 12, 192, **knob)


# the CPU recipe's schedule (600 iterations) twice as long
LONG = {'train_cfg.max_iters': 1200, 'train_cfg.val_interval': 1200,
        'param_scheduler.1.end': 1200}

# DeiT-T at 512x512: 32x32 patches; the ATME preset's block FLOPs there
TEST_GRID = (32, 32)
PRESET = schedule_flops('deit-t', TEST_GRID, 192, 12)
PEERS = ('ATME', 'ATMEAdaptive', 'TPS', 'ToMe', 'EViT')


def cpu_rows(dataset: str) -> List[Row]:
    """The CPU recipe's rows (DeiT-T from scratch, 256x256 crops, 600
    iterations): same seed, schedule, crops and initialisation for all.

    The peers' rows compare the reducers at equal block FLOPs: trained, at
    the ATME preset's (``tps-matched``, ``tome``, ``evit`` against
    ``cait-atme``); training-free on the dense checkpoint, at the preset's
    (``atme-``, ``tps-matched-``, ``tome-``, ``evit-training-free``) and at
    35% (``atme-``, ``tps-``, ``tome-``, ``evit-35-training-free``).
    """
    c = f'configs/upernet/upernet_{{}}_{dataset}_cpu.py'
    rows = [
        Row('dense', c.format('deit_t'), 'DeiT-T, no compression'),
        Row('cait-atme', c.format('cait_t'), 'ATME (deit-t preset) trained'),
        Row('atme-training-free', c.format('deit_t'),
            'dense checkpoint, ATME at test time only', reuse='dense',
            test_options=reducer(type='ATME', schedule='deit-t')),
        Row('tps', c.format('tps_t'), 'TPS (attn scores, 0.7 at 3/6/9) '
            'trained'),
        Row('tps-training-free', c.format('deit_t'),
            'dense checkpoint, TPS at test time only', reuse='dense',
            test_options=reducer(type='TPS', blocks=(3, 6, 9),
                                 keep_ratio=0.7)),
        Row('cait-atme-cdcp', c.format('cait_t_cdcp'),
            'ATME + CDCP (half of QK/V/MLP), exported', export=True),
        Row('cait-atme-cdcp-whole', c.format('cait_t_cdcp-whole'),
            'ATME + CDCP on the backbone and the UperNet head (half of '
            'every group), exported', export=True),
        Row('cait-atme-cdcp-whole-25', c.format('cait_t_cdcp-whole'),
            'the same with a quarter of every head group pruned, exported',
            export=True, options={
                f'custom_hooks.0.ratios.{group}': 0.25
                for group in ('ppm', 'lateral', 'fpn', 'fuse')
            }),
        # CAIT's order of work: compress a trained model. The dense row's
        # checkpoint (same seed) is loaded, the compactors start as the
        # identity, and the CPU recipe's schedule runs again with the ramp
        Row('cait-atme-cdcp-whole-ft', c.format('cait_t_cdcp-whole'),
            'the dense checkpoint fine-tuned with ATME + CDCP on the '
            'backbone and the head (half of every group), exported',
            init_from='dense', export=True),
        # the same at a fine-tuning learning rate: the recipe's 1e-3 is a
        # from-scratch one, and restarting a trained model at it loses
        # what the dense row learned
        Row('cait-atme-cdcp-whole-ft-lr1e-4', c.format('cait_t_cdcp-whole'),
            'the same fine-tuning at a tenth of the learning rate (1e-4)',
            init_from='dense', export=True,
            options={'optim_wrapper.optimizer.lr': 1e-4}),
        # the same at the recipe's rate with the ramp moved forward: a
        # trained model can be ranked from the start, and 300 iterations
        # after the last selection are left to recover (100 -> 400: 200)
        Row('cait-atme-cdcp-whole-ft-early', c.format('cait_t_cdcp-whole'),
            'the same fine-tuning with the pruning ramp from iteration 0 to '
            '300 (instead of 100 to 400)', init_from='dense', export=True,
            options={'custom_hooks.0.begin': 0, 'custom_hooks.0.end': 300}),
        # twice as long: the early ramp stretched to 0-600 (re-ranked every
        # 100) in 1200 iterations, so the last channels selected have 400
        # iterations after the lasso zeroed them; dense-ft-long is the
        # control, the dense checkpoint trained as long without compression
        Row('cait-atme-cdcp-whole-ft-long', c.format('cait_t_cdcp-whole'),
            'the early-ramp fine-tuning twice as long (1200 iterations, '
            'ramp 0-600)', init_from='dense', export=True,
            options={**LONG, 'custom_hooks.0.begin': 0,
                     'custom_hooks.0.end': 600,
                     'custom_hooks.0.interval': 100}),
        Row('dense-ft-long', c.format('deit_t'),
            'control: the dense checkpoint trained 1200 more iterations',
            init_from='dense', options=LONG),
        Row('cait-atme-30', c.format('cait_t'),
            'ATME at 30% of the block FLOPs, trained',
            options=reducer(type='ATME', schedule=ATME_T_30)),
        Row('atme-30-training-free', c.format('deit_t'),
            'dense checkpoint, ATME at 30% of the block FLOPs at test time',
            reuse='dense',
            test_options=reducer(type='ATME', schedule=ATME_T_30)),
        Row('tps-matched', c.format('tps_t'),
            f'TPS at the preset\'s {PRESET:.0%} block FLOPs, trained',
            options=reducer(**matched('TPS', PRESET))),
        Row('tome', c.format('tome_t'),
            f'ToMe at the preset\'s {PRESET:.0%} block FLOPs, trained'),
        Row('evit', c.format('evit_t'),
            f'EViT at the preset\'s {PRESET:.0%} block FLOPs, trained'),
    ]
    # ATMEAdaptive runs the preset's counts (its for_flops is ATME's)
    for kind, name in (('ATMEAdaptive', 'atme-adaptive'),
                       ('TPS', 'tps-matched'), ('ToMe', 'tome'),
                       ('EViT', 'evit')):
        rows.append(Row(
            f'{name}-training-free', c.format('deit_t'),
            f'dense checkpoint, {kind} at {PRESET:.0%} block FLOPs at test '
            'time', reuse='dense', test_options=reducer(
                **matched(kind, PRESET))))
    for kind in PEERS:
        rows.append(Row(
            f'{kind.lower()}-35-training-free', c.format('deit_t'),
            f'dense checkpoint, {kind} at 35% block FLOPs at test time',
            reuse='dense', test_options=reducer(**matched(kind, 0.35))))
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


def _run(args: Sequence[str], log: str) -> None:
    with open(log, 'a') as f:  # a resumed training adds to its log
        proc = subprocess.run([sys.executable, *args], cwd=REPO, stdout=f,
                              stderr=subprocess.STDOUT)
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


def _options(data_root: Optional[str], extra: Dict[str, Any]) -> List[str]:
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
                *_options(data_root, options)
            ], osp.join(row_dir, 'train.log'))
            with open(trained, 'w') as f:
                f.write(_trained(work_dir, row.name) + '\n')
        ckpt = _trained(work_dir, row.reuse or row.name)
        if row.export:
            exported = osp.join(row_dir, 'compressed.pth')
            log(f'[{row.name}] exporting {ckpt}')
            export = ['tools/deployment/export_compressed.py', row.config, ckpt, exported]
            if row.options:
                export += ['--cfg-options', *_options(None, row.options)]
            _run(export, osp.join(row_dir, 'export.log'))
            ckpt = exported
        test_dir = osp.join(row_dir, 'test')
        log(f'[{row.name}] testing {ckpt}')
        _run([
            'tools/test.py', row.config, ckpt, '--work-dir', test_dir,
            '--cfg-options', *_options(data_root, row.all_test_options)
        ], osp.join(row_dir, 'test.log'))
        metrics = _last_metrics(test_dir)
        log(f'[{row.name}] {metrics}')
        results.append(
            dict(asdict(row), checkpoint=ckpt, metrics=metrics,
                 per_class=per_class(osp.join(row_dir, 'test.log'))))
    return results


def bench_entries(rows: Sequence[Row],
                  results: Sequence[Dict]) -> List[Entry]:
    """What each row runs at test time, as benchmark entries (an exported
    row is rebuilt from its file)."""
    entries = []
    for row, r in zip(rows, results):
        overrides = dict(row.all_test_options)
        if row.export:
            overrides['model.backbone.compressed'] = r['checkpoint']
            overrides['model.backbone.channel_prune'] = None
            # channel-pruned heads at the widths the file gives
            meta = load_local_checkpoint(
                r['checkpoint'], map_location='cpu')['meta']['cait_mm']
            for name, head in meta.get('heads', {}).items():
                overrides[f'model.{name}.channel_widths'] = head[
                    'channel_widths']
                overrides[f'model.{name}.channel_prune'] = None
        entries.append(Entry(row.config, overrides, label=row.name))
    return entries


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


def to_markdown(summary: Sequence[Dict], speed: Sequence, metric: str,
                title: str) -> str:
    """The table of rows (mean +- std over seeds) with the speed of each;
    then their per-class IoU."""
    dense = summary[0]['mean']
    lines = [
        title, '', f'| row | what | {metric} | of dense | GFLOPs | '
        'params (M) | images/s | speed-up |',
        '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |'
    ]
    for r, s in zip(summary, speed):
        spread = f' +- {r["std"]:.2f} ({r["seeds"]} seeds)' \
            if r['seeds'] > 1 else ''
        lines.append(
            f'| {r["name"]} | {r["description"]} | {r["mean"]:.2f}{spread} '
            f'| {100 * r["mean"] / dense:.1f}% | {s.flops / 1e9:.2f} | '
            f'{s.params / 1e6:.2f} | {s.images_per_s:.2f} | '
            f'{s.speedup:.2f}x |')
    classes = list(summary[0]['per_class'])
    if classes:
        lines += ['', '| row | ' + ' | '.join(classes) + ' |',
                  '| --- |' + ' ---: |' * len(classes)]
        lines += [f'| {r["name"]} | ' + ' | '.join(
            f'{r["per_class"].get(c, float("nan")):.2f}' for c in classes) +
            ' |' for r in summary]
    return '\n'.join(lines) + '\n'


def plot(summary: Sequence[Dict], speed: Sequence, metric: str, title: str,
         filename: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r, s in zip(summary, speed):
        ax.errorbar(s.images_per_s, r['mean'], yerr=r['std'] or None,
                    fmt='o', capsize=3)
        ax.annotate(r['name'], (s.images_per_s, r['mean']),
                    textcoords='offset points', xytext=(5, 4), fontsize=8)
    ax.set_xlabel('images/s (whole model, same run)')
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(filename, dpi=120)
    plt.close(fig)


def run_experiment(rows: Sequence[Row], data_root: str, work_dir: str,
                   shape, device: str = 'cpu', repeats: int = 10,
                   metric: str = 'mIoU', skip_existing: bool = True,
                   title: str = '', seeds: Sequence[int] = (0, ),
                   log=print) -> str:
    """Rows end to end for every seed, then the speed of each row (its
    first seed's); writes ``results.{md,json,png}`` in ``work_dir`` and
    returns the Markdown table."""
    runs = with_seeds(rows, seeds)
    results = run_rows(runs, data_root, work_dir, skip_existing, log)
    first = results[:len(rows)]
    speed = benchmark(bench_entries(runs[:len(rows)], first), tuple(shape),
                      1, 'model', device, warmup=3, repeats=repeats, log=log)
    heading = (f'{title} | seeds {list(seeds)} | speed: whole model, '
               f'{shape[0]}x{shape[1]}, batch 1, {device}, median of '
               f'{repeats}')
    summary = summarise(results, metric)
    table = to_markdown(summary, speed, metric, heading)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(table)
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(
            dict(rows=results, summary=summary,
                 speed=[asdict(s) for s in speed], shape=list(shape),
                 device=device, seeds=list(seeds)), f, indent=2)
    plot(summary, speed, metric, heading,
         osp.join(work_dir, 'results.png'))
    return table


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('dataset', choices=['membrane', 'dubai'])
    parser.add_argument('--data-root', required=True,
                        help='converted dataset (mmseg layout)')
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
    return parser.parse_args()


def main():
    args = parse_args()
    work_dir = args.work_dir or f'work_dirs/real_{args.dataset}'
    os.makedirs(work_dir, exist_ok=True)
    rows = cpu_rows(args.dataset)
    if args.rows:
        unknown = set(args.rows) - {r.name for r in rows}
        if unknown:
            raise ValueError(f'unknown rows {sorted(unknown)}; rows: '
                             f'{[r.name for r in rows]}')
        rows = [r for r in rows if r.name in args.rows]
    table = run_experiment(
        rows, os.path.abspath(args.data_root), os.path.abspath(work_dir),
        args.shape, args.device, args.repeats,
        skip_existing=not args.no_skip, title=f'{args.dataset} (CPU recipe)',
        seeds=args.seeds)
    print(table)


if __name__ == '__main__':
    main()
