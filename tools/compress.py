"""Compress your model: the dense model and every token reducer at a FLOPs
budget, evaluated training-free on the config's validation set.

    python tools/compress.py CONFIG CHECKPOINT --flops 0.5 [0.35 ...]
        [--reducers ATME ATMEAdaptive ToMe EViT TPS] [--min-accuracy PCT]
        [--max-samples N] [--work-dir DIR] [--out DIR] [--device D]
        [--repeats N] [--compile [--compile-mode M]]
        [--finetune ITERS [--finetune-lr LR]] [--cfg-options k=v ...]

Each reducer is set by its ``for_flops`` to each budget FLOPS of the dense
ViT's block FLOPs at the backbone's ``img_size`` (ATME its schedule, ToMe
its ratio, TPS and EViT their keep ratio) and the checkpoint, loaded
strictly (mmseg's and mmpretrain's ViT layouts included,
docs/guides/byom.md), is evaluated with the config's evaluator. Then every
row's whole model is timed in one run (the benchmark's ratio to dense, at
the backbone's ``img_size``, batch 1, on DEVICE, compiled rows against
compiled rows with ``--compile``; ``--repeats 0`` skips it).

The table (block FLOPs, counted GFLOPs, speed-up, the task's metric, % of
dense) is printed and written to WORK_DIR/compress.md and compress.json,
with the metric against the speed-up in compress.png; a reducer that
cannot reach a budget, or, in a detector fed padded batches, does not
support them, is left out, named. The chosen row is the most
accurate at the tightest budget or, with ``--min-accuracy PCT``, the one
with the fewest block FLOPs that keeps PCT% of the dense metric. ``--out
DIR`` writes it as DIR/config.py and DIR/model.pth, which ``tools/test.py``
evaluates as they are, the choice recorded in the checkpoint's meta.
``--max-samples N`` evaluates the first N validation images, for a quick
look.

``--finetune ITERS`` then trains the chosen row from the checkpoint:
it writes OUT/finetune.py (the chosen config, ITERS iterations at a
tenth of the config's learning rate or ``--finetune-lr``, warm-up then
poly decay), runs ``tools/train.py`` on it (in WORK_DIR/finetune), evaluates
the result as the other rows and writes it as OUT/finetuned.pth, its
metric added to the table. ``python tools/train.py OUT/finetune.py`` runs
the same fine-tuning by hand.
"""
import argparse
import os.path as osp
import subprocess
import sys

import torch
from mmengine.config import DictAction

from cait_mm.analysis.compress import (FINETUNE_LR_SCALE, REDUCERS,
                                       check_finetune, compress,
                                       finetune_config, record_finetuned)
from cait_mm.engine import add_compile_arguments, compile_options


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='dense checkpoint')
    parser.add_argument('--flops', type=float, nargs='+', required=True,
                        help="budgets: fractions of the dense ViT's block "
                        'FLOPs, in (0, 1)')
    parser.add_argument('--min-accuracy', type=float,
                        help='choose the row with the fewest block FLOPs '
                        'that keeps this percentage of the dense metric')
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
    add_compile_arguments(parser)
    parser.add_argument('--finetune', type=int, metavar='ITERS',
                        help='then fine-tune the chosen row for ITERS '
                        'iterations (written to OUT/finetuned.pth)')
    parser.add_argument('--finetune-lr', type=float,
                        help='fine-tuning learning rate (default: '
                        f"{FINETUNE_LR_SCALE:g} of the config's)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    if args.finetune_lr is not None and args.finetune is None:
        parser.error('--finetune-lr goes with --finetune ITERS')
    if args.finetune is not None:
        try:  # before anything is evaluated
            check_finetune(args.finetune, args.finetune_lr)
        except ValueError as error:
            parser.error(str(error))
    return args


def finetune(args, result, work_dir, out):
    """Train the chosen row with tools/train.py, as a user would, then
    score and record it."""
    config = finetune_config(out, args.finetune, args.finetune_lr)
    train_dir = osp.join(work_dir, 'finetune')
    # no validation in the training: the result is scored below, on the
    # rows' images (--max-samples included)
    command = [sys.executable, osp.join(osp.dirname(__file__), 'train.py'),
               config, '--work-dir', train_dir, '--cfg-options',
               f'train_cfg.val_begin={args.finetune + 1}']
    print('fine-tuning: ' + ' '.join(command[1:]), flush=True)
    if subprocess.run(command).returncode:
        sys.exit(f'fine-tuning failed (see {train_dir}); the training-free '
                 f'model is in {out}')
    with open(osp.join(train_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    record_finetuned(result, work_dir, out, checkpoint, args.finetune,
                     args.max_samples)
    print(f'fine-tuned model written to {out}: python tools/test.py '
          f'{osp.join(out, "config.py")} {osp.join(out, "finetuned.pth")}')


def main():
    args = parse_args()
    work_dir = args.work_dir or osp.join(
        'work_dirs',
        'compress_' + osp.splitext(osp.basename(args.config))[0])
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    out = args.out
    if args.finetune is not None and out is None:
        out = osp.join(work_dir, 'chosen')
    result = compress(
        args.config, args.checkpoint, args.flops, work_dir,
        reducers=args.reducers, max_samples=args.max_samples,
        options=args.cfg_options, out=out, device=device,
        repeats=args.repeats, min_accuracy=args.min_accuracy,
        compile=compile_options(device, args.compile_mode,
                                args.compile_backend)
        if args.compile else None)
    if args.finetune is not None:
        finetune(args, result, work_dir, out)


if __name__ == '__main__':
    main()
