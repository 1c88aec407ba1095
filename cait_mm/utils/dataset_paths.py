"""Fail early, and helpfully, when a config points at data that is not there.
"""
import os.path as osp
from typing import Iterable, List

# How to prepare each dataset; ``{data_root}`` is filled in.
PREPARE_HINTS = {
    'DemoShapesDataset':
    'Generate it with: python tools/make_demo_data.py --out {data_root}',
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
    'CocoDataset':
    'Put COCO 2017 under {data_root} (train2017/, val2017/, '
    'annotations/instances_*.json); see mmdet\'s docs, '
    'user_guides/dataset_prepare.md.',
}


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
    paths += [osp.join(root, p) for p in prefix.values() if p]
    if dataset_cfg.get('ann_file'):
        paths.append(osp.join(root, dataset_cfg['ann_file']))
    return paths


def check_dataset_paths(cfg, dataloaders: Iterable[str]) -> None:
    """Raise ``FileNotFoundError`` naming the missing path and how to fix it.

    Args:
        cfg (Config): The full config.
        dataloaders (Iterable[str]): Keys such as ``'train_dataloader'``;
            absent or ``None`` entries are skipped.
    """
    for key in dataloaders:
        loader = cfg.get(key)
        if not loader:
            continue
        for dataset in _leaf_datasets(loader['dataset']):
            for path in _expected_paths(dataset):
                if osp.exists(path):
                    continue
                dtype = str(dataset.get('type', 'the dataset'))
                name = dtype.split('.')[-1]
                hint = PREPARE_HINTS.get(
                    name, 'See the dataset preparation guide of mmseg/mmdet.')
                raise FileNotFoundError(
                    f'{key}: {dtype} expects "{path}", which does not exist. '
                    + hint.format(data_root=dataset.get('data_root', '')))
