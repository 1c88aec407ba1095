"""Which token reducer keeps the most accuracy of a model at a FLOPs budget,
measured training-free on its config's validation set
(``tools/compress.py``).

Every row evaluates the same checkpoint with the config's own runner and
evaluator: the dense model, then each reducer set by its ``for_flops`` to
the budget's block FLOPs at the backbone's ``img_size``. Reducers add no
weights (TPS scores tokens by the class token's attention here), so the
checkpoint loads strictly into every row.
"""
import copy
import json
import os
import os.path as osp
import tempfile
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from cait_mm.core import TOKEN_REDUCERS, build_token_reducer
from cait_mm.utils.atomic_write import atomic_output, write_text

REDUCERS = ('ATME', 'ATMEAdaptive', 'ToMe', 'EViT', 'TPS')
# the first metric a task reports that is present: what rows are ranked by
METRICS = ('mIoU', 'coco/segm_mAP', 'coco/bbox_mAP', 'accuracy/top1')
META_KEY = 'cait_mm_compress'
# the fine-tuning recipe, measured in docs/guides/byom.md (3 seeds, both
# datasets): a tenth of the config's learning rate, since 0.3 of it tore
# the Dubai models apart on two seeds of three (92.0% of dense against
# 96.6%) and was no better on the membranes; a linear warm-up over the
# first quarter, poly decay to 0
FINETUNE_LR_SCALE = 0.1
FINETUNE_WARMUP = 0.25


@dataclass
class Row:
    """One evaluated setting: its name, the backbone's ``token_reducer``
    (``None``: dense), its block FLOPs over the dense ViT's, what the
    evaluator reported, and, once timed, the whole model's GFLOPs per image
    (counted on the built model) and speed-up over dense; ``budget``: the
    FLOPs budget it was set for (1 for dense)."""
    name: str
    reducer: Optional[Dict]
    flops: float
    metrics: Dict[str, float]
    gflops: Optional[float] = None
    speedup: Optional[float] = None
    budget: float = 1.


def time_rows(cfg: Config, rows: Sequence[Row], device: str,
              repeats: int, compile: Optional[Dict] = None,
              log=print) -> None:
    """Time every row's whole model in one run (the benchmark's method:
    same input at the backbone's ``img_size``, batch 1, after warm-up,
    median of ``repeats``; ratios to dense; every row compiled with
    ``compile``'s options where given), filling ``gflops`` and
    ``speedup``."""
    from cait_mm.analysis.benchmark import Entry, benchmark
    with tempfile.TemporaryDirectory() as folder:
        # the rows' config as the caller merged it (overrides included)
        config = osp.join(folder, 'config.py')
        cfg.dump(config)
        entries = [Entry(config, {'model.backbone.token_reducer':
                                  row.reducer}, label=row.name)
                   for row in rows]
        img_size = cfg.model.backbone.get('img_size', 224)
        shape = (img_size, img_size) if isinstance(img_size, int) \
            else tuple(img_size)
        results = benchmark(entries, shape, device=device, repeats=repeats,
                            compile=compile, log=log)
    for row, result in zip(rows, results):
        row.gflops = round(result.flops / 1e9, 6)
        row.speedup = round(result.speedup, 3)


def _stage_blocks(num_layers: int) -> List[int]:
    """Where TPS and EViT reduce: DeiT's (3, 6, 9) of 12 blocks, at the
    same depth fractions in a ViT of another depth."""
    return sorted({min(num_layers - 1, round(num_layers * k / 4))
                   for k in (1, 2, 3)})


def reducer_class(kind: str):
    """The registered reducer class named ``kind``."""
    if kind not in TOKEN_REDUCERS:
        raise ValueError(f'Unknown reducer {kind!r}; valid: '
                         f'{sorted(TOKEN_REDUCERS)}')
    return TOKEN_REDUCERS[kind]


def reducer_for_flops(kind: str, flops: float, grid, arch: Dict) -> Dict:
    """``kind``'s config whose block FLOPs on ``grid`` patches are the
    closest to ``flops``: ToMe by its size-independent ratio, ATMEAdaptive
    at a steady rate (training-free it keeps more accuracy than at ATME's
    counts: docs/results/real_data.md)."""
    reducer_class(kind)
    settings = {}
    if kind in ('ToMe', 'ATMEAdaptive'):
        settings['knob'] = 'ratio'
    elif kind in ('TPS', 'EViT'):
        settings['blocks'] = _stage_blocks(arch['num_layers'])
    return TOKEN_REDUCERS[kind].for_flops(
        flops, grid, arch['num_layers'], arch['embed_dims'],
        arch['mlp_ratio'], **settings)


def block_flops(reducer: Optional[Dict], grid, arch: Dict) -> float:
    """Block FLOPs of a reducer config over the dense ViT's (1 for none)."""
    if reducer is None:
        return 1.
    return build_token_reducer(
        reducer, arch['num_layers'], arch['embed_dims']).flops_fraction(
            grid, arch['mlp_ratio'])


def backbone_geometry(cfg: Config):
    """The CAITViT's arch settings and the patch grid of its ``img_size``,
    where the FLOPs budget is set (the backbone alone is built)."""
    from cait_mm.models import CAITViT
    settings = {k: v for k, v in cfg.model.backbone.items()
                if k not in ('type', 'init_cfg', 'pretrained')}
    backbone = CAITViT(**settings)
    return backbone.arch_settings, backbone.pos_grid


def primary_metric(metrics: Dict[str, float]) -> str:
    for name in METRICS:
        if name in metrics:
            return name
    if not metrics:
        raise RuntimeError('The evaluator reported no metric')
    return next(iter(metrics))


def check_config(cfg: Config, source: str) -> None:
    """A config that compress can evaluate: a validation set and a CAITViT
    backbone."""
    missing = [k for k in ('val_dataloader', 'val_evaluator')
               if not cfg.get(k)]
    if missing:
        raise ValueError(f'{source} has no validation set ({missing} '
                         'missing or None): compress evaluates every row on '
                         "the config's validation set")
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    if 'CAITViT' not in str(backbone.get('type')):
        raise ValueError(f'{source}: model.backbone is '
                         f'{backbone.get("type")!r}; compress needs a '
                         'cait_mm.CAITViT backbone')


def _row_config(cfg: Config, checkpoint: str, reducer: Optional[Dict],
                work_dir: str, name: str,
                max_samples: Optional[int]) -> Config:
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.token_reducer = reducer
    cfg.work_dir = work_dir
    cfg.experiment_name = f'compress_{name}'
    cfg.load_from = checkpoint
    cfg.resume = False
    cfg.launcher = 'none'
    # the validation set, through the test loop (no training state)
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    cfg.test_evaluator = copy.deepcopy(cfg.val_evaluator)
    cfg.test_cfg = dict(type='TestLoop')
    if max_samples:
        cfg.test_dataloader.dataset.indices = max_samples
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
        dict(type='cait_mm.ProgressBarHook', title=f'evaluating {name}')]
    return cfg


def subset_annotations(cfg: Config, max_samples: Optional[int],
                       work_dir: str) -> None:
    """With ``max_samples`` and a COCO-style evaluator (``ann_file``), cut
    the annotation file to the images evaluated and point the evaluator at
    the cut (mmdet's CocoMetric scores every image of its file: the images
    left out would count as misses)."""
    evaluator = cfg.get('val_evaluator')
    if not max_samples or not isinstance(evaluator, dict) or \
            not evaluator.get('ann_file'):
        return
    from mmengine.fileio import load
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset = copy.deepcopy(cfg.val_dataloader.dataset)
    dataset.indices = max_samples
    dataset = DATASETS.build(dataset)
    ids = {dataset.get_data_info(i)['img_id'] for i in range(len(dataset))}
    coco = load(evaluator['ann_file'])
    coco['images'] = [im for im in coco['images'] if im['id'] in ids]
    coco['annotations'] = [a for a in coco.get('annotations', [])
                           if a['image_id'] in ids]
    path = osp.join(work_dir, f'annotations_first_{max_samples}.json')
    os.makedirs(work_dir, exist_ok=True)
    write_text(path, json.dumps(coco))
    evaluator['ann_file'] = path


def evaluate(cfg: Config, checkpoint: str, reducer: Optional[Dict],
             work_dir: str, name: str, max_samples: Optional[int] = None):
    """Evaluate one row with the config's runner; its metrics."""
    from cait_mm.engine import strict_load_from
    from cait_mm.utils.dataset_paths import (add_input_checks,
                                             check_dataset_paths)
    cfg = _row_config(cfg, checkpoint, reducer, work_dir, name, max_samples)
    check_dataset_paths(cfg, ['test_dataloader'])
    add_input_checks(cfg, ['test_dataloader'])
    runner = Runner.from_cfg(cfg)
    # every key must fit: a reducer adds no weights here
    strict_load_from(runner, allow_uncompressed=False)
    return {k: round(float(v), 4) for k, v in runner.test().items()}


def pads_backbone_inputs(cfg: Config) -> bool:
    """Whether the config's model runs its backbone on padded batches
    (mmdet pads a batch to its largest image; our detectors tell the
    backbone where each image ends)."""
    from cait_mm.registry import MODELS
    try:
        model = MODELS.get(cfg.model.type)
    except KeyError:  # a scope the registry does not know
        return False
    return bool(getattr(model, 'pads_backbone_inputs', False))


def plan_rows(kinds: Sequence[str], budgets: Sequence[float], grid,
              arch: Dict, padded: bool = False, log=print):
    """Every (reducer, budget) setting that reaches its budget (within 3%):
    ``(name, budget, reducer, block FLOPs)`` tuples, and why the others
    are left out (by name). Names are the reducer's, with the budget when
    there are several. With ``padded`` inputs, reducers that do not
    support padded batches are left out."""
    classes = {kind: reducer_class(kind) for kind in kinds}
    planned, unreached = [], {}
    for budget in budgets:
        for kind in kinds:
            name = kind if len(budgets) == 1 else f'{kind} {budget:g}'
            if padded and not classes[kind].supports_padding:
                unreached[name] = (
                    'the model feeds its backbone padded batches (each '
                    'image padded to the largest of its batch), which this '
                    'reducer does not support: its token counts are per '
                    'batch, not per image')
                log(f'{name} left out: {unreached[name]}')
                continue
            try:
                reducer = reducer_for_flops(kind, budget, grid, arch)
            except ValueError as error:  # e.g. no ATME schedule gets there
                unreached[name] = str(error)
            else:
                fraction = block_flops(reducer, grid, arch)
                if fraction <= budget * 1.03:
                    planned.append((name, budget, reducer, fraction))
                    continue
                unreached[name] = (f'its closest setting has {fraction:.3f}'
                                   ' of the block FLOPs')
            log(f'{name} left out: {unreached[name]}')
    return planned, unreached


def choose(rows: Sequence[Row], metric: str,
           min_accuracy: Optional[float] = None) -> Row:
    """The row to keep among the reducer rows (``rows[0]`` is dense).

    Without ``min_accuracy``: the most accurate row at the tightest budget
    asked (a budget is what the user can afford). With it (percent of
    dense): the row with the fewest block FLOPs that keeps at least that
    share, the faster (then the more accurate) on a tie; none: an error
    that gives the best share measured.
    """
    dense = rows[0].metrics[metric]
    candidates = rows[1:]
    if min_accuracy is None:
        tightest = min(r.budget for r in candidates)
        return max((r for r in candidates if r.budget == tightest),
                   key=lambda r: r.metrics[metric])

    def share(row):
        return 100 * row.metrics[metric] / dense if dense else 0.

    kept = [r for r in candidates if share(r) >= min_accuracy]
    if not kept:
        best = max(candidates, key=share)
        raise ValueError(
            f'No row keeps {min_accuracy:g}% of the dense {metric} '
            f'({dense:g}); the best is {best.name} with {share(best):.1f}%: '
            'try a larger --flops budget or a lower --min-accuracy')
    return min(kept, key=lambda r: (r.flops, -(r.speedup or 0),
                                    -r.metrics[metric]))


def compress(config: str,
             checkpoint: str,
             flops: Union[float, Sequence[float]],
             work_dir: str,
             reducers: Sequence[str] = REDUCERS,
             max_samples: Optional[int] = None,
             options: Optional[Dict] = None,
             out: Optional[str] = None,
             device: Optional[str] = None,
             repeats: int = 10,
             min_accuracy: Optional[float] = None,
             compile: Optional[Dict] = None,
             log=print) -> Dict:
    """Evaluate the dense model and every reducer at each ``flops`` budget
    (block FLOPs over the dense ViT's), write ``compress.md``,
    ``compress.json`` and ``compress.png`` (metric against speed-up, or
    block FLOPs when not timed) in ``work_dir``, and, with ``out``, the
    chosen row (:func:`choose`) as ``out/config.py`` and ``out/model.pth``.
    Rows are timed on ``device`` (CUDA when there is one) with ``repeats``
    timed calls (0: not timed), compiled with ``compile``'s
    ``torch.compile`` options where given.

    Returns:
        dict: what ``compress.json`` holds.
    """
    budgets = sorted({float(flops)} if isinstance(flops, (int, float))
                     else {float(f) for f in flops}, reverse=True)
    for budget in budgets:
        if not 0 < budget < 1:
            raise ValueError(f'--flops {budget:g} must be in (0, 1): a '
                             "fraction of the dense ViT's block FLOPs")
    if min_accuracy is not None and not 0 < min_accuracy <= 100:
        raise ValueError(f'--min-accuracy {min_accuracy:g} must be in '
                         '(0, 100]: a percentage of the dense metric')
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    check_config(cfg, config)
    from cait_mm.models.backbones import configure_compressed_backbone
    if configure_compressed_backbone(cfg, checkpoint):
        raise ValueError(f'{checkpoint} is an exported compressed model; '
                         'compress starts from a dense checkpoint')

    arch, grid = backbone_geometry(cfg)
    # every row's setting first: a budget out of reach fails in seconds
    planned, unreached = plan_rows(reducers, budgets, grid, arch,
                                   pads_backbone_inputs(cfg), log)
    if not planned:
        raise ValueError(
            f'No reducer reaches {", ".join(f"{b:g}" for b in budgets)} of '
            f'the block FLOPs at this input size ({grid[0]}x{grid[1]} '
            'patches): ' + '; '.join(f'{k}: {v}'
                                     for k, v in unreached.items()))

    subset_annotations(cfg, max_samples, work_dir)
    rows = [Row('dense', None, 1., evaluate(
        cfg, checkpoint, None, osp.join(work_dir, 'dense'), 'dense',
        max_samples), budget=1.)]
    for name, budget, reducer, fraction in planned:
        folder = name.replace(' ', '_')
        rows.append(Row(name, reducer, round(fraction, 4), evaluate(
            cfg, checkpoint, reducer, osp.join(work_dir, folder), folder,
            max_samples), budget=budget))
    if repeats:
        time_rows(cfg, rows, device or (
            'cuda' if torch.cuda.is_available() else 'cpu'), repeats,
            compile, log)
    metric = primary_metric(rows[0].metrics)
    dense = rows[0].metrics[metric]
    chosen = choose(rows, metric, min_accuracy)
    result = dict(
        config=config, checkpoint=checkpoint, flops=budgets, metric=metric,
        grid=list(grid), max_samples=max_samples, min_accuracy=min_accuracy,
        compiled=compile is not None, chosen=chosen.name,
        unreached=unreached, rows=[asdict(r) for r in rows])
    table = to_markdown(rows, metric, dense, chosen.name, unreached)
    log(table)
    os.makedirs(work_dir, exist_ok=True)
    write_text(osp.join(work_dir, 'compress.md'), table + '\n')
    write_text(osp.join(work_dir, 'compress.json'),
               json.dumps(result, indent=2) + '\n')
    plot_rows(rows, metric, osp.join(work_dir, 'compress.png'),
              f'{osp.basename(config)}: {chosen.name} chosen')
    if out is not None:
        write_chosen(cfg, checkpoint, chosen, result, out)
        log(f'{chosen.name} written to {out}: python tools/test.py '
            f'{osp.join(out, "config.py")} {osp.join(out, "model.pth")}')
    return result


def plot_rows(rows: Sequence[Row], metric: str, filename: str,
              title: str) -> None:
    """The metric against the speed-up (timed) or the block FLOPs."""
    from cait_mm.analysis.plots import accuracy_speed_plot
    timed = rows[0].speedup is not None
    accuracy_speed_plot(
        [(r.name, r.speedup if timed else r.flops, r.metrics[metric], None)
         for r in rows],
        'speed-up over dense (whole model, same run)' if timed else
        "block FLOPs (fraction of the dense ViT's)", metric, title, filename)


def to_markdown(rows: Sequence[Row], metric: str, dense: float,
                chosen: str, unreached: Optional[Dict[str, str]] = None
                ) -> str:
    lines = [f'| row | reducer | block FLOPs | GFLOPs | speed-up | '
             f'{metric} | % of dense |',
             '|---|---|---|---|---|---|---|']
    for row in rows:
        settings = '' if row.reducer is None else ', '.join(
            f'{k}={v}' for k, v in row.reducer.items() if k != 'type')
        value = row.metrics[metric]
        share = 100 * value / dense if dense else float('nan')
        mark = ' (chosen)' if row.name == chosen else ''
        timed = '| |' if row.speedup is None else \
            f'| {row.gflops:.3g} | {row.speedup:.2f}x |'
        lines.append(f'| {row.name}{mark} | {settings} | {row.flops:.3f} '
                     f'{timed} {value:.2f} | {share:.1f} |')
    for kind, why in (unreached or {}).items():
        lines.append(f'\n{kind} is left out: {why}.')
    return '\n'.join(lines)


def write_chosen(cfg: Config, checkpoint: str, chosen: Row, result: Dict,
                 out: str) -> None:
    """``out/config.py``: the config with the chosen reducer;
    ``out/model.pth``: the checkpoint's weights in CAITViT's layout (a
    reducer adds none), with the choice in ``meta``."""
    os.makedirs(out, exist_ok=True)
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.token_reducer = chosen.reducer
    cfg.load_from = None
    cfg.dump(osp.join(out, 'config.py'))
    write_state(checkpoint, {META_KEY: _choice_meta(result)},
                osp.join(out, 'model.pth'))


def _choice_meta(result: Dict) -> Dict:
    meta = dict((k, result[k]) for k in (
        'config', 'checkpoint', 'flops', 'metric', 'chosen', 'max_samples',
        'min_accuracy'))
    meta['rows'] = json.dumps(result['rows'])
    return meta


def write_state(checkpoint: str, meta: Dict, path: str) -> None:
    """``checkpoint``'s model weights in CAITViT's layout, with ``meta``,
    written atomically to ``path``."""
    from mmengine.runner import CheckpointLoader

    from cait_mm.models.backbones.vit_checkpoint import unwrap_state_dict
    from cait_mm.models.backbones.vit_layouts import convert_model_state
    state, _ = convert_model_state(
        unwrap_state_dict(CheckpointLoader.load_checkpoint(
            checkpoint, map_location='cpu')), ['backbone.'],
        f'Checkpoint "{checkpoint}"')
    with atomic_output(path) as tmp:
        torch.save(dict(state_dict=state, meta=meta), tmp)


def check_finetune(iters: int, lr: Optional[float] = None) -> None:
    """Fine-tuning settings that can run: at least one iteration, a
    positive learning rate (``None``: the recipe's)."""
    if iters < 1:
        raise ValueError(f'--finetune {iters}: fine-tuning needs at least '
                         'one iteration')
    if lr is not None and not lr > 0:
        raise ValueError(f'--finetune-lr {lr:g} must be positive')


def finetune_config(out: str, iters: int, lr: Optional[float] = None) -> str:
    """Write ``out/finetune.py``: the chosen row's config (``out/config.py``)
    trained for ``iters`` iterations from ``out/model.pth`` with the
    fine-tuning recipe (``lr``: ``FINETUNE_LR_SCALE`` of the config's when
    ``None``), for ``tools/train.py``. Returns its path."""
    check_finetune(iters, lr)
    cfg = Config.fromfile(osp.join(out, 'config.py'))
    base_lr = ((cfg.get('optim_wrapper') or {}).get('optimizer')
               or {}).get('lr')
    if lr is None:
        if base_lr is None:
            raise ValueError(
                f'{osp.join(out, "config.py")} has no optim_wrapper.'
                'optimizer.lr to scale: give --finetune-lr')
        lr = base_lr * FINETUNE_LR_SCALE
        source = f"{FINETUNE_LR_SCALE:g} of the config's"
    else:
        source = 'as given'
    warmup = max(1, round(iters * FINETUNE_WARMUP)) if iters > 1 else 0
    schedulers = [] if not warmup else [
        f"    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, "
        f'begin=0, end={warmup}),']
    schedulers.append(
        f"    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, "
        f'begin={warmup}, end={iters}),')
    schedulers = '\n'.join(schedulers)
    text = f"""\
# The row tools/compress.py chose (./config.py), fine-tuned from its
# checkpoint (./model.pth): {iters} iterations at lr {lr:g} ({source}),
# linear warm-up over the first quarter, poly decay to 0
# (docs/guides/byom.md). Run: python tools/train.py THIS
_base_ = ['./config.py']
load_from = '{{{{ fileDirname }}}}/model.pth'
resume = False
optim_wrapper = dict(optimizer=dict(lr={lr!r}))
param_scheduler = [
{schedulers}
]
# iterations whatever the config's loop (a detector's is by epoch)
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters={iters},
    val_interval={iters})
log_processor = dict(by_epoch=False)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval={iters}))
"""
    path = osp.join(out, 'finetune.py')
    write_text(path, text)
    return path


def record_finetuned(result: Dict, work_dir: str, out: str,
                     checkpoint: str, iters: int,
                     max_samples: Optional[int] = None,
                     log=print) -> Dict:
    """Evaluate the fine-tuned ``checkpoint`` as the other rows were
    (``max_samples`` included), add it to ``result`` (and to
    ``compress.json`` and ``compress.md`` in ``work_dir``) and write it as
    ``out/finetuned.pth`` in CAITViT's layout with the choice in ``meta``.
    Returns ``result``'s ``finetuned`` entry."""
    cfg = Config.fromfile(osp.join(out, 'finetune.py'))
    chosen = next(r for r in result['rows'] if r['name'] == result['chosen'])
    metrics = evaluate(cfg, checkpoint, chosen['reducer'],
                       osp.join(work_dir, 'finetuned'), 'finetuned',
                       max_samples)
    metric = result['metric']
    dense = result['rows'][0]['metrics'][metric]
    share = 100 * metrics[metric] / dense if dense else float('nan')
    entry = dict(iters=iters, lr=cfg.optim_wrapper.optimizer.lr,
                 metrics=metrics, checkpoint=checkpoint,
                 share=round(share, 2))
    result['finetuned'] = entry
    line = (f'\n{result["chosen"]} fine-tuned ({iters} iterations, lr '
            f'{entry["lr"]:g}): {metric} {metrics[metric]:.2f}, '
            f'{share:.1f}% of dense (training-free '
            f'{chosen["metrics"][metric]:.2f})')
    # fine-tuning from a row that already keeps nearly all of dense can
    # lose a little (docs/guides/byom.md): say which file to keep
    line += ('.' if metrics[metric] >= chosen['metrics'][metric] else
             ': below the training-free row, whose '
             f'{osp.join(out, "model.pth")} stays the better model.')
    log(line)
    table = osp.join(work_dir, 'compress.md')
    with open(table) as f:
        text = f.read()
    write_text(table, text + line + '\n')
    write_text(osp.join(work_dir, 'compress.json'),
               json.dumps(result, indent=2) + '\n')
    meta = _choice_meta(result)
    meta['finetuned'] = json.dumps(entry)
    write_state(checkpoint, {META_KEY: meta}, osp.join(out, 'finetuned.pth'))
    return entry
