"""Test (and evaluate) a cait_mm model, the mmseg/mmdet/mmpretrain way.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out OUT]
        [--show] [--show-dir DIR] [--amp] [--compile [--compile-mode M]]
        [--speed-warmup N] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

``--out`` and ``--show-dir`` mean what they mean in the config's task
(``default_scope``): for mmseg, a directory of predicted label maps and of
painted images; for mmdet, a ``.pkl`` of raw detections and painted images;
for mmpretrain (ImageNet classification), a ``.pkl`` of the predictions
(scores and labels per image) and painted images. A ``.pkl`` is written
under a temporary name and renamed when complete (a failed or killed run
leaves an earlier one as it was).
The checkpoint is loaded strictly: one that does not fit the config fails,
listing the missing and unexpected keys. A segmentor or classifier saved by
mmseg or mmpretrain loads into the config that mirrors it (its ViT's keys
are converted, docs/guides/byom.md). An exported compressed checkpoint
(``tools/deployment/export_compressed.py``) is evaluated with its training
config: the backbone is built from the file's metadata. ``--compile`` runs the
backbone, neck and decode head through ``torch.compile``
(``cait_mm.engine.compile``); heads with proposals and post-processing stay
eager. The scores come with the run's speed, ``images_per_s`` after
``--speed-warmup`` batches (compiling and CUDA-graph recording happen in
those), data loading and evaluation included (``TestSpeedHook``).
"""
import argparse
import contextlib
import importlib
import os.path as osp

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from cait_mm.engine import (TestSpeedHook, add_compile_arguments,
                            add_runner_arguments, compile_runner_model,
                            parse_runner_args, setup_cpu_distributed,
                            strict_load_from, teardown_distributed)
from cait_mm.models.backbones import configure_compressed_backbone
from cait_mm.utils.atomic_write import atomic_output
from cait_mm.utils.checkpoint_files import CheckpointError, checkpoint_problem
from cait_mm.utils.dataset_paths import add_input_checks, check_dataset_paths

TASKS = ('mmseg', 'mmdet', 'mmpretrain')
# Tasks whose --out is a pickle of predictions, and the metric that dumps it.
DUMPERS = {
    'mmdet': 'mmdet.evaluation.DumpDetResults',
    'mmpretrain': 'mmengine.evaluator.DumpResults',  # as mmpretrain's test.py
}


def parse_args():
    parser = argparse.ArgumentParser(description='Test a cait_mm model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save the file with evaluation metrics')
    parser.add_argument(
        '--out',
        help='mmseg: directory for predicted label maps; mmdet: .pkl file '
        'for the raw detections; mmpretrain: .pkl file for the predictions')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir', help='directory where painted images will be saved')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--amp', action='store_true', help='test with mixed precision')
    add_compile_arguments(parser)
    parser.add_argument(
        '--speed-warmup',
        type=int,
        default=5,
        help='batches left out of the logged images/s (default 5)')
    add_runner_arguments(parser)
    return parse_runner_args(parser)


def enable_visualization(cfg, args):
    """Turn on the task's ``VisualizationHook`` for --show / --show-dir."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError('--show/--show-dir need a VisualizationHook in '
                           "default_hooks, e.g. visualization=dict(type="
                           "'SegVisualizationHook')")
    # mmpretrain's hook is switched on by `enable`, mmseg's and mmdet's by
    # `draw`; each has its own way to name the output directory.
    hook['enable' if cfg.default_scope == 'mmpretrain' else 'draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if cfg.default_scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir
        elif cfg.default_scope == 'mmpretrain':
            hook['out_dir'] = args.show_dir
        else:
            cfg.visualizer['save_dir'] = args.show_dir


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    task = cfg.get('default_scope')
    if task not in TASKS:
        raise ValueError(f'{args.config}: default_scope={task!r}; '
                         f'tools/test.py handles {TASKS}')

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    problem = checkpoint_problem(args.checkpoint)
    if problem is not None:
        # before anything is built: a broken file fails in seconds
        raise CheckpointError(f'Checkpoint "{args.checkpoint}" {problem}')
    cfg.load_from = args.checkpoint
    configure_compressed_backbone(cfg, args.checkpoint)
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
    if args.out is not None and task == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    elif args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl file for {task}: {args.out}')

    check_dataset_paths(cfg, ['test_dataloader'])
    add_input_checks(cfg, ['test_dataloader'])
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg \
        else RUNNERS.build(cfg)
    # MMEngine loads non-strictly (it warns and goes on); evaluating a model
    # with half of its weights missing would report a meaningless score.
    # Nothing may be missing: untrained compactors or token scorers would
    # be scored too.
    strict_load_from(runner, allow_uncompressed=False)
    dump = args.out is not None and task in DUMPERS
    # the pickle is written by the main process only; complete or not at all
    out = atomic_output(args.out, keep_suffix=True) \
        if dump and is_main_process() else contextlib.nullcontext(args.out)
    with out as out_path:
        if dump:
            # imported here: only the config's task package is needed
            module, name = DUMPERS[task].rsplit('.', 1)
            dumper = getattr(importlib.import_module(module), name)
            runner.test_evaluator.metrics.append(
                dumper(out_file_path=out_path))
        runner.register_hook(TestSpeedHook(warmup=args.speed_warmup))
        compile_runner_model(runner, args)
        runner.test()
    teardown_distributed()


if __name__ == '__main__':
    main()
