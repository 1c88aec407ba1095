import os.path as osp

import cv2
import numpy as np
import pytest

from cait_mm.datasets import DubaiAerialDataset
from cait_mm.datasets.converters.dubai_aerial import CLASSES, COLOURS
from .real_data_checks import build_from_config, check_train_sample


@pytest.mark.parametrize('config', [
    'upernet/upernet_deit_s_dubai.py', 'upernet/upernet_deit_t_dubai.py',
    'upernet/upernet_deit_t_dubai_cpu.py'
])
def test_configs_read_the_converted_layout(config, dubai_converted):
    out, summary = dubai_converted
    cfg, train = build_from_config(config, 'train_dataloader', out)
    assert isinstance(train, DubaiAerialDataset)
    assert len(train) == summary.splits['training'].samples
    assert train.metainfo['classes'] == CLASSES
    assert train.metainfo['palette'] == [list(c) for c in COLOURS]
    check_train_sample(train, cfg.crop_size, len(CLASSES))

    _, val = build_from_config(config, 'val_dataloader', out)
    assert len(val) == summary.splits['validation'].samples
    first = val.get_data_info(0)
    assert osp.basename(first['img_path']) == \
        'tile7_image_part_001_y0000_x0000.png'
    seg = val[0]['data_samples'].gt_sem_seg.data[0].numpy()
    expected = cv2.imread(first['seg_map_path'], cv2.IMREAD_UNCHANGED)
    assert seg.shape == (32, 32)  # whole crops at their native size
    np.testing.assert_array_equal(seg, expected)
