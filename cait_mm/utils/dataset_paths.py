"""Fail early, and helpfully, when a config points at data that is not there
or that would be used wrongly without a word.
"""
import os
import os.path as osp
from typing import Iterable, List, Optional

# How to prepare each dataset; ``{data_root}`` is filled in.
PREPARE_HINTS = {
    'DemoShapesDataset':
    'Generate it with: python tools/misc/make_demo_data.py --out {data_root}',
    'ISBIMembraneDataset':
    'Convert the ISBI 2012 EM slices (a folder with images/0..29.png and '
    'labels/0..29.png) with: python tools/dataset_converters/isbi_membrane.py '
    '--src SRC --out {data_root}',
    'DubaiAerialDataset':
    'Convert the Dubai aerial tiles (a folder with tile_1..tile_8, each with '
    'images/*.jpg and masks/*.png) with: python '
    'tools/dataset_converters/dubai_aerial.py --src SRC --out {data_root}',
    'ADE20KDataset':
    'Download ADEChallengeData2016.zip (ADE20K scene parsing) and unzip it '
    'so that {data_root}/images and {data_root}/annotations exist; see '
    "mmseg's docs, user_guides/2_dataset_prepare.md#ade20k.",
    'CityscapesDataset':
    'Download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip into '
    "{data_root}, then run mmseg's tools/dataset_converters/cityscapes.py "
    '{data_root} to make the *labelTrainIds.png maps.',
    'SynapseDataset':
    "Download the Synapse multi-organ CT data (RawData.zip) and run mmseg's "
    'tools/dataset_converters/synapse.py --dataset-path <RawData dir> '
    '--save-path {data_root}.',
    'PotsdamDataset':
    'Download the ISPRS Potsdam zips (2_Ortho_RGB.zip, '
    "5_Labels_all_noBoundary.zip) and run mmseg's "
    'tools/dataset_converters/potsdam.py <zip dir> -o {data_root}.',
    'ImageNet':
    'Put ImageNet-1k under {data_root} as class folders (train/<wnid>/*.JPEG'
    ', val/<wnid>/*.JPEG) or with annotation lists (train/, val/ and '
    "meta/train.txt, meta/val.txt); see mmpretrain's docs, "
    'user_guides/dataset_prepare.md.',
    'CustomDataset':
    'Put the images under {data_root} as class folders '
    '(<data_prefix>/<class>/*.png), or give an ann_file listing '
    '"<image> <label>" lines.',
    'CocoDataset':
    'Put COCO 2017 under {data_root} (train2017/, val2017/, '
    'annotations/instances_*.json); see mmdet\'s docs, '
    'user_guides/dataset_prepare.md.',
}


# The demo scenes as COCO instances (tools/misc/make_demo_data.py writes them
# next to the segmentation layout): mmdet's CocoDataset with these classes,
# which are cait_mm.datasets.demo_shapes_generator.CLASSES without the
# background (not imported: cait_mm.datasets needs mmseg).
DEMO_INSTANCE_CLASSES = ('disc', 'square', 'triangle', 'ring', 'cross')


def _hint(dataset_cfg: dict) -> str:
    name = str(dataset_cfg.get('type', '')).split('.')[-1]
    classes = (dataset_cfg.get('metainfo') or {}).get('classes')
    if classes is not None and tuple(classes) == DEMO_INSTANCE_CLASSES:
        name = 'DemoShapesDataset'
    hint = PREPARE_HINTS.get(
        name, 'See the dataset preparation guide of mmseg/mmdet.')
    return hint.format(data_root=dataset_cfg.get('data_root', ''))


def _evaluator_paths(evaluator) -> List[str]:
    """Annotation files that metrics read (e.g. mmdet's CocoMetric)."""
    metrics = evaluator if isinstance(evaluator, (list, tuple)) else \
        [evaluator] if evaluator else []
    return [m['ann_file'] for m in metrics if m.get('ann_file')]


def _leaf_datasets(dataset_cfg) -> Iterable[dict]:
    """Dataset configs with data, through wrappers (Repeat, Concat, ...)."""
    if 'dataset' in dataset_cfg:
        yield from _leaf_datasets(dataset_cfg['dataset'])
    elif 'datasets' in dataset_cfg:
        for cfg in dataset_cfg['datasets']:
            yield from _leaf_datasets(cfg)
    else:
        yield dataset_cfg


def _expected_paths(dataset_cfg: dict) -> List[str]:
    root = dataset_cfg.get('data_root') or ''
    paths = [root] if root else []
    prefix = dataset_cfg.get('data_prefix') or {}
    if isinstance(prefix, str):  # mmpretrain: one image folder
        prefix = dict(img_path=prefix)
    elif not prefix and dataset_cfg.get('split') and str(
            dataset_cfg.get('type', '')).endswith('ImageNet'):
        # mmpretrain's ImageNet(split='train') reads <data_root>/train
        prefix = dict(img_path=dataset_cfg['split'])
    paths += [osp.join(root, p) for p in prefix.values() if p]
    if dataset_cfg.get('ann_file'):
        paths.append(osp.join(root, dataset_cfg['ann_file']))
    return paths


def _img_suffix(dataset_cfg: dict, scope: Optional[str]) -> Optional[str]:
    """The image suffix a folder-listing dataset looks for, as the dataset
    itself sees it (built with ``lazy_init``: nothing is listed or read);
    ``None`` when it has none."""
    if dataset_cfg.get('img_suffix'):
        return dataset_cfg['img_suffix']
    from mmengine.registry import DATASETS
    try:
        with DATASETS.switch_scope_and_registry(scope) as registry:
            dataset = registry.build(
                dict(dataset_cfg, lazy_init=True, pipeline=[]))
    except Exception:  # not buildable here: the Runner will say why
        return None
    return getattr(dataset, 'img_suffix', None)


def _has_file(folder: str, suffix: str) -> bool:
    for _, _, files in os.walk(folder):
        if any(name.endswith(suffix) for name in files):
            return True
    return False


def _check_images_found(key: str, dataset: dict,
                        scope: Optional[str]) -> None:
    """A dataset that lists its image folder (mmseg's, without an
    ``ann_file``) must find an image there; otherwise MMEngine fails deep
    inside with ``need at least one array to concatenate``."""
    prefix = dataset.get('data_prefix') or {}
    if dataset.get('ann_file') or not isinstance(prefix, dict) or \
            not prefix.get('img_path'):
        return
    folder = osp.join(dataset.get('data_root') or '', prefix['img_path'])
    suffix = _img_suffix(dataset, scope)
    if suffix is None or _has_file(folder, suffix):
        return
    dtype = str(dataset.get('type', 'the dataset'))
    raise FileNotFoundError(
        f'{key}: {dtype} found no image ending in "{suffix}" in "{folder}" '
        f'(searched with its subfolders). If the images have another '
        f'extension, set img_suffix in the dataset config; otherwise prepare '
        f'the data. ' + _hint(dataset))


def check_dataset_paths(cfg, dataloaders: Iterable[str]) -> None:
    """Raise ``FileNotFoundError`` naming the missing path or the empty
    image folder, and how to fix it.

    Args:
        cfg (Config): The full config.
        dataloaders (Iterable[str]): Keys such as ``'train_dataloader'``;
            absent or ``None`` entries are skipped.
    """
    for key in dataloaders:
        loader = cfg.get(key)
        if not loader:
            continue
        datasets = list(_leaf_datasets(loader['dataset']))
        for dataset in datasets:
            for path in _expected_paths(dataset):
                if osp.exists(path):
                    continue
                dtype = str(dataset.get('type', 'the dataset'))
                raise FileNotFoundError(
                    f'{key}: {dtype} expects "{path}", which does not exist. '
                    + _hint(dataset))
            _check_images_found(key, dataset, cfg.get('default_scope'))
        # val_dataloader -> val_evaluator: COCO metrics read the ann_file
        # again, from their own path
        metric_key = key.replace('_dataloader', '_evaluator')
        for path in _evaluator_paths(cfg.get(metric_key)):
            if not osp.exists(path):
                raise FileNotFoundError(
                    f'{metric_key}: ann_file "{path}" does not exist. ' +
                    _hint(datasets[0]))


# Transforms after which a sample's image and labels are loaded.
_LOADS = ('LoadImageFromFile', 'LoadAnnotations')


def _type(step) -> str:
    return str(step.get('type', '')).split('.')[-1]


def add_input_checks(cfg, dataloaders: Iterable[str],
                     fail_on_non_finite: Iterable[str] = ()) -> None:
    """Put ``cait_mm.CheckInputs`` after the last loading transform of
    every pipeline of ``dataloaders`` (once), so that label ids outside the
    segmentation head's classes fail naming the file, in training and in
    evaluation alike, and non-finite images are reported by name (in the
    run's log); in the pipelines of ``fail_on_non_finite`` (a subset of
    ``dataloaders``) they fail.

    The classes and the ignore index are the decode head's (mmseg); other
    tasks' samples get the image check only.
    """
    head = (cfg.get('model') or {}).get('decode_head')
    if isinstance(head, (list, tuple)):
        head = head[-1]
    check = dict(
        type='cait_mm.CheckInputs',
        num_classes=head.get('num_classes') if head else None,
        ignore_index=head.get('ignore_index', 255) if head else 255)
    fail_on_non_finite = set(fail_on_non_finite)
    for key in dataloaders:
        loader = cfg.get(key)
        if not loader:
            continue
        non_finite = 'error' if key in fail_on_non_finite else 'log'
        for dataset in _leaf_datasets(loader['dataset']):
            pipeline = dataset.get('pipeline') or []
            for i, step in enumerate(pipeline):
                if _type(step) in _LOADS:
                    pipeline[i] = dict(type='cait_mm.NameLoadErrors',
                                       transform=step)
            types = [_type(t) for t in pipeline]
            loads = [i for i, name in enumerate(types)
                     if name == 'NameLoadErrors']
            if loads and 'CheckInputs' not in types:
                pipeline.insert(loads[-1] + 1,
                                dict(check, non_finite=non_finite))
