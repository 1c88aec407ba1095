"""Compress your model: the dense model and every token reducer at a FLOPs
budget, evaluated training-free on the config's validation set.

    python tools/compress.py CONFIG CHECKPOINT --flops 0.5
        [--reducers ATME ToMe EViT TPS] [--max-samples N]
        [--work-dir DIR] [--out DIR] [--device D] [--repeats N]
        [--cfg-options k=v ...]

Each reducer is set by its ``for_flops`` to FLOPS of the dense ViT's block
FLOPs at the backbone's ``img_size`` (ATME its schedule, ToMe its ratio,
TPS and EViT their keep ratio) and the checkpoint, loaded strictly (mmseg's
and mmpretrain's ViT layouts included, docs/guides/byom.md), is evaluated
with the config's evaluator; then every row's whole model is timed in one run
(the benchmark's ratio to dense, at the backbone's ``img_size``, batch 1,
on DEVICE; ``--repeats 0`` skips it). The table (block FLOPs, counted
GFLOPs, speed-up, the task's metric, % of dense) is printed and written to
WORK_DIR/compress.md and compress.json; a reducer that cannot reach the
budget is left out, named. ``--out DIR`` writes the best reducer row as
DIR/config.py and DIR/model.pth, which ``tools/test.py`` evaluates as they
are. ``--max-samples N`` evaluates the first N validation images, for a
quick look.
"""
import argparse
import os.path as osp

from mmengine.config import DictAction

from cait_mm.analysis.compress import REDUCERS, compress


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='dense checkpoint')
    parser.add_argument('--flops', type=float, required=True,
                        help="budget: a fraction of the dense ViT's block "
                        'FLOPs, in (0, 1)')
    parser.add_argument('--reducers', nargs='+', default=list(REDUCERS),
                        choices=REDUCERS)
    parser.add_argument('--max-samples', type=int,
                        help='evaluate the first N validation images only')
    parser.add_argument('--work-dir',
                        help='where rows and the table go (default: '
                        'work_dirs/compress_<config name>)')
    parser.add_argument('--out', help='write the chosen model here')
    parser.add_argument('--device',
                        help='where rows are timed (default: cuda if '
                        'available, else cpu)')
    parser.add_argument('--repeats', type=int, default=10,
                        help='timed calls per row (0: no timing)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def main():
    args = parse_args()
    work_dir = args.work_dir or osp.join(
        'work_dirs',
        'compress_' + osp.splitext(osp.basename(args.config))[0])
    compress(args.config, args.checkpoint, args.flops, work_dir,
             reducers=args.reducers, max_samples=args.max_samples,
             options=args.cfg_options, out=args.out, device=args.device,
             repeats=args.repeats)


if __name__ == '__main__':
    main()
