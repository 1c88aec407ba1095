"""Train a cait_mm model, the mmseg/mmdet/mmpretrain way.

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--resume [CKPT]]
        [--compile [--compile-mode M]] [--non-finite {stop,skip}]
        [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]

The task (segmentation, detection, ImageNet classification) follows from the
config's ``default_scope``; everything else is MMEngine's Runner, with
these safeguards (docs/guides/reliability.md): one run per work dir (a
second one fails at once, naming the first: ``cait_mm.utils.work_dir_lock``);
``load_from``
loads strictly (a checkpoint of another architecture fails before
training, listing the keys that do not fit); ``--resume`` without a value
continues from the checkpoint ``last_checkpoint`` names or, when that one
is missing, broken or corrupt, from the newest complete one (and says so);
every pipeline checks its samples (label ids within the head's classes,
finite pixels; ``cait_mm.CheckInputs``) and names the file that fails to
load; and a non-finite loss stops the run before the optimizer step, or,
with ``--non-finite skip``, leaves the step out (``NonFiniteLossHook``;
non-finite input pixels then are logged instead of failing).

``--compile`` runs the backbone, neck and decode head forwards (and so their
backward) through ``torch.compile`` (``cait_mm.engine.compile``); losses,
data samples and the optimizer stay eager. MMEngine's ``compile`` config key
compiles the whole ``train_step`` instead, optimizer step included, which
torch 2.13's compiler fails on (an internal error in the optimizer step).
"""
import argparse
import functools
import logging
import os
import os.path as osp

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from cait_mm.engine import (NonFiniteLossHook, add_compile_arguments,
                            add_runner_arguments, compile_runner_model,
                            parse_runner_args, setup_cpu_distributed,
                            strict_load_from, teardown_distributed)
from cait_mm.models.backbones import configure_compressed_backbone
from cait_mm.utils.checkpoint_files import find_resume_checkpoint
from cait_mm.utils.dataset_paths import add_input_checks, check_dataset_paths
from cait_mm.utils.work_dir_lock import lock_work_dir, unlock_work_dir

# where each launcher tells a process its global rank
_RANK_VARIABLES = ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK')


def parse_args():
    parser = argparse.ArgumentParser(description='Train a cait_mm model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic mixed precision training (needs a GPU)')
    add_compile_arguments(parser)
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, with no value, from the '
        'latest checkpoint in the work directory')
    parser.add_argument(
        '--non-finite',
        choices=['stop', 'skip'],
        default='stop',
        help='a training step whose loss is NaN or inf: stop the run before '
        'the optimizer step (default; non-finite input pixels fail too), or '
        'skip the step (non-finite input pixels are logged)')
    add_runner_arguments(parser)
    return parse_runner_args(parser)


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'

    main_process = all(
        int(os.environ.get(name, 0)) == 0 for name in _RANK_VARIABLES)
    if main_process:
        # before anything reads or writes the work dir
        lock_work_dir(
            cfg.work_dir,
            warn=functools.partial(
                print_log, logger='current', level=logging.WARNING))
    try:
        train(cfg, args)
    finally:
        if main_process:
            unlock_work_dir(cfg.work_dir)


def train(cfg, args):
    if args.resume == 'auto':
        # MMEngine would take last_checkpoint as it is, even when it names
        # a deleted or half-written file
        cfg.load_from = find_resume_checkpoint(cfg.work_dir)
        cfg.resume = cfg.load_from is not None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if cfg.get('load_from') and not cfg.get('resume'):
        configure_compressed_backbone(cfg, cfg.load_from)
    loaders = ['train_dataloader', 'val_dataloader']
    check_dataset_paths(cfg, loaders)
    add_input_checks(
        cfg,
        loaders,
        fail_on_non_finite=['train_dataloader']
        if args.non_finite == 'stop' else [])
    setup_cpu_distributed(cfg)

    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg \
        else RUNNERS.build(cfg)
    strict_load_from(runner)
    runner.register_hook(NonFiniteLossHook(action=args.non_finite))
    compile_runner_model(runner, args)
    runner.train()
    teardown_distributed()


if __name__ == '__main__':
    main()
