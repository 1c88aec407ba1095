"""Control for ``tools/compress.py --finetune``: the dense model fine-tuned
by the same recipe, with no reducer.

Issue #29 asks the fine-tuned compressed row to reach 99% of dense. On the
Dubai tiles the fine-tuned ToMe row lost to training-free ToMe on two seeds
of three. Fine-tuning the *dense* checkpoint by the same recipe (same
config, seed, iterations, rate, warm-up and decay; ``finetune_config``
writes both) separates what the recipe does to a model from what the
reducer costs: if dense itself drops after it, the shortfall is the
recipe's on that data, not the reducer's.

    python experiments/real_data/finetune_control.py \
        configs/upernet/upernet_deit_t_dubai_cpu.py \
        work_dirs/real_dubai/dense-seed1/train/iter_600.pth \
        --data-root data/dubai_aerial --seed 1 \
        --out work_dirs/finetune_control/dubai-seed1 [--iters 200] [--lr LR]

Writes OUT/config.py (the dense config, data roots and seed set),
OUT/model.pth (the checkpoint), OUT/finetune.py (the recipe), trains in
OUT/train and tests the dense and the fine-tuned checkpoints with
``tools/test.py`` (OUT/test-dense, OUT/test-finetuned); prints both mIoUs
and writes them to OUT/control.json.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

from mmengine.config import Config

from cait_mm.analysis.compress import finetune_config

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from runner import LOADERS, _last_metrics  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(ROOT, 'tools')


def run(command):
    print(' '.join(command), flush=True)
    if subprocess.run(command).returncode:
        sys.exit(f'failed: {" ".join(command)}')


def test(config, checkpoint, work_dir):
    """``tools/test.py`` on ``checkpoint``; returns its metrics."""
    run([sys.executable, osp.join(TOOLS, 'test.py'), config, checkpoint,
         '--work-dir', work_dir])
    return _last_metrics(work_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--seed', type=int, required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--iters', type=int, default=200)
    parser.add_argument('--lr', type=float)
    args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict({
        'randomness.seed': args.seed,
        **{f'{loader}.dataset.data_root': args.data_root
           for loader in LOADERS}})
    cfg.dump(osp.join(args.out, 'config.py'))
    shutil.copyfile(args.checkpoint, osp.join(args.out, 'model.pth'))
    config = finetune_config(args.out, args.iters, args.lr)

    train_dir = osp.join(args.out, 'train')
    # scored below with tools/test.py, as compress.py scores its rows
    run([sys.executable, osp.join(TOOLS, 'train.py'), config, '--work-dir',
         train_dir, '--cfg-options', f'train_cfg.val_begin={args.iters + 1}'])
    with open(osp.join(train_dir, 'last_checkpoint')) as f:
        finetuned = f.read().strip()

    dense = test(config, osp.join(args.out, 'model.pth'),
                 osp.join(args.out, 'test-dense'))
    tuned = test(config, finetuned, osp.join(args.out, 'test-finetuned'))
    result = dict(seed=args.seed, iters=args.iters, checkpoint=args.checkpoint,
                  dense=dense, finetuned=tuned)
    with open(osp.join(args.out, 'control.json'), 'w') as f:
        json.dump(result, f, indent=1)
    print(f"seed {args.seed}: dense mIoU {dense['mIoU']:.2f}, fine-tuned "
          f"{tuned['mIoU']:.2f} ({tuned['mIoU'] - dense['mIoU']:+.2f})")


if __name__ == '__main__':
    main()
