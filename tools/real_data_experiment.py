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
import os

from cait_mm.analysis.experiment import cpu_rows, run_experiment


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
