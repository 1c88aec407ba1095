"""Shared checks: a converted dataset read through a config's pipelines."""
import os.path as osp

import numpy as np
from mmengine.config import Config
from mmengine.registry import init_default_scope

from ..conftest import REPO


def build_from_config(config, loader, data_root):
    """The dataset of ``loader`` in ``config``, reading ``data_root``."""
    from mmseg.registry import DATASETS
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    init_default_scope(cfg.default_scope)
    dataset_cfg = cfg[loader].dataset
    dataset_cfg.data_root = data_root
    return cfg, DATASETS.build(dataset_cfg)


def check_train_sample(dataset, crop_size, num_classes):
    """A training sample is at most a crop, labels are class ids."""
    sample = dataset[0]
    image = sample['inputs']
    seg = sample['data_samples'].gt_sem_seg.data
    assert image.shape[0] == 3 and image.shape[1:] == seg.shape[1:]
    assert image.shape[1] <= crop_size[0] and image.shape[2] <= crop_size[1]
    values = set(np.unique(seg.numpy()).tolist())
    assert values <= set(range(num_classes)) | {255}, values
    return image.shape[1:]
