import os.path as osp

import cv2
import numpy as np
import pytest

from cait_mm.datasets import ISBIMembraneDataset
from .real_data_checks import build_from_config, check_train_sample


@pytest.mark.parametrize('config, always_full_crop', [
    ('upernet/upernet_deit_s_membrane.py', False),
    ('upernet/upernet_deit_t_membrane.py', False),
    ('upernet/upernet_deit_t_membrane_cpu.py', True),
])
def test_configs_read_the_converted_layout(config, always_full_crop,
                                           isbi_converted):
    out, _ = isbi_converted
    cfg, train = build_from_config(config, 'train_dataloader', out)
    assert isinstance(train, ISBIMembraneDataset) and len(train) == 24
    assert train.metainfo['classes'] == ('membrane', 'cell interior')
    assert train.metainfo['palette'] == [[0, 0, 0], [255, 255, 255]]
    # the fake slices are 40x48: rescaled to 384-768 pixels, then cropped,
    # so 256x256 crops are always full, 512x512 ones not
    size = check_train_sample(train, cfg.crop_size, 2)
    assert (tuple(size) == cfg.crop_size) or not always_full_crop

    _, val = build_from_config(config, 'val_dataloader', out)
    assert len(val) == 6
    sample = val[0]
    assert sample['inputs'].shape == (3, 40, 48)  # native size, grey as RGB
    seg = sample['data_samples'].gt_sem_seg.data[0].numpy()
    expected = cv2.imread(
        osp.join(out, 'annotations/validation/24.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(seg, expected)  # zero label not reduced
