"""Dense vs CAIT vs TPS on a real dataset, end to end, in one command.

    python tools/real_data_experiment.py {membrane,dubai} --data-root DIR
        [--work-dir DIR] [--rows NAME ...] [--no-skip] [--device cpu]
        [--shape 512 512] [--repeats 10]

Prepare the data first (docs/real_data.md), e.g.
    python tools/dataset_converters/isbi_membrane.py --src SRC --out DIR

Rows, all with the CPU recipe (DeiT-T from scratch on 256x256 crops, 600
iterations; same seed, schedule, crops and initialisation): dense;
cait-atme (trained with ATME); atme-training-free (the dense checkpoint,
ATME at test time); tps (trained with TPS); tps-training-free;
cait-atme-cdcp (ATME + CDCP, exported, evaluated from the export);
cait-atme-30 and atme-30-training-free (ATME at 30% of the block FLOPs,
trained or at test time only). Each row
runs tools/train.py, tools/export_compressed.py and tools/test.py; then all
rows are timed in one process (whole model, batch 1), as ratios to dense.
Writes results.md, results.json and results.png (mIoU vs images/s) in the
work dir; rows already trained there are reused unless --no-skip.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from cait_mm.analysis.benchmark import Entry, benchmark

# The rows run the user-facing tools (tools/train.py, tools/test.py,
# tools/export_compressed.py) in subprocesses, from the repository this tool
# sits in, so the experiment exercises exactly what users run; speed is
# measured afterwards for all rows in one process, as ratios to the first.
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


@dataclass
class Row:
    """One row: a config to train (or the row whose checkpoint it reuses),
    overrides for training and testing (``options``) or for testing only
    (``test_options``), and whether the checkpoint is exported first."""
    name: str
    config: str
    description: str
    reuse: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)
    test_options: Dict[str, Any] = field(default_factory=dict)
    export: bool = False

    @property
    def all_test_options(self) -> Dict[str, Any]:
        return {**self.options, **self.test_options}


# 30% of DeiT-T's block FLOPs at 512x512 (tools/atme_schedule.py --arch
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


def cpu_rows(dataset: str) -> List[Row]:
    """The CPU recipe's rows (DeiT-T from scratch, 256x256 crops, 600
    iterations): same seed, schedule, crops and initialisation for all."""
    c = f'configs/upernet/upernet_{{}}_{dataset}_cpu.py'
    return [
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
        Row('cait-atme-30', c.format('cait_t'),
            'ATME at 30% of the block FLOPs, trained',
            options=reducer(type='ATME', schedule=ATME_T_30)),
        Row('atme-30-training-free', c.format('deit_t'),
            'dense checkpoint, ATME at 30% of the block FLOPs at test time',
            reuse='dense',
            test_options=reducer(type='ATME', schedule=ATME_T_30)),
    ]


def _run(args: Sequence[str], log: str) -> None:
    with open(log, 'w') as f:
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
        if row.reuse is None and not (skip_existing and osp.isfile(
                osp.join(train_dir, 'last_checkpoint'))):
            log(f'[{row.name}] training {row.config}')
            _run([
                'tools/train.py', row.config, '--work-dir', train_dir,
                '--cfg-options', *_options(data_root, row.options)
            ], osp.join(row_dir, 'train.log'))
        ckpt = _trained(work_dir, row.reuse or row.name)
        if row.export:
            exported = osp.join(row_dir, 'compressed.pth')
            log(f'[{row.name}] exporting {ckpt}')
            export = ['tools/export_compressed.py', row.config, ckpt, exported]
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
            dict(asdict(row), checkpoint=ckpt, metrics=metrics))
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
        entries.append(Entry(row.config, overrides, label=row.name))
    return entries


def to_markdown(results: Sequence[Dict], speed: Sequence, metric: str,
                title: str) -> str:
    dense = results[0]['metrics'][metric]
    lines = [
        title, '', f'| row | what | {metric} | of dense | GFLOPs | '
        'params (M) | images/s | speed-up |',
        '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |'
    ]
    for r, s in zip(results, speed):
        value = r['metrics'][metric]
        lines.append(
            f'| {r["name"]} | {r["description"]} | {value:.2f} | '
            f'{100 * value / dense:.1f}% | {s.flops / 1e9:.2f} | '
            f'{s.params / 1e6:.2f} | {s.images_per_s:.2f} | '
            f'{s.speedup:.2f}x |')
    return '\n'.join(lines) + '\n'


def plot(results: Sequence[Dict], speed: Sequence, metric: str, title: str,
         filename: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r, s in zip(results, speed):
        ax.scatter(s.images_per_s, r['metrics'][metric], s=40)
        ax.annotate(r['name'], (s.images_per_s, r['metrics'][metric]),
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
                   title: str = '', log=print) -> str:
    """Rows end to end, then speed; writes ``results.{md,json,png}`` in
    ``work_dir`` and returns the Markdown table."""
    results = run_rows(rows, data_root, work_dir, skip_existing, log)
    speed = benchmark(bench_entries(rows, results), tuple(shape), 1, 'model',
                      device, warmup=3, repeats=repeats, log=log)
    heading = (f'{title} | speed: whole model, {shape[0]}x{shape[1]}, batch '
               f'1, {device}, median of {repeats}')
    table = to_markdown(results, speed, metric, heading)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(table)
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(
            dict(rows=results, speed=[asdict(s) for s in speed],
                 shape=list(shape), device=device), f, indent=2)
    plot(results, speed, metric, heading,
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
        skip_existing=not args.no_skip, title=f'{args.dataset} (CPU recipe)')
    print(table)


if __name__ == '__main__':
    main()
