"""CheckInputs and where the tools put it."""
import warnings

import numpy as np
import pytest
from mmengine.config import Config

from cait_mm.transforms import CheckInputs
from cait_mm.utils.dataset_paths import add_input_checks


def test_labels_outside_the_classes_fail_naming_the_file():
    check = CheckInputs(num_classes=6, ignore_index=255)
    seg = np.zeros((4, 5), np.uint8)
    seg[0, 0], seg[1, 1] = 255, 5  # ignored, and the last class: fine
    results = dict(gt_seg_map=seg, seg_map_path='a/b.png')
    assert check(results) is results
    seg[2, :2] = (6, 9)
    with pytest.raises(ValueError,
                       match=r'a/b\.png: label ids \[6, 9\] are outside '
                       r'\[0, 6\) and are not the ignore index 255'):
        check(results)
    # without classes only the image is checked
    assert CheckInputs()(results) is results


def test_non_finite_pixels_are_reported_by_name():
    img = np.ones((3, 4, 3), np.float32)
    results = dict(img=img, img_path='x/y.tif')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        CheckInputs()(results)  # finite: no warning
        CheckInputs()(dict(img=np.zeros((2, 2, 3), np.uint8)))
    img[1, 2, 0], img[0, 0, 1] = np.nan, np.inf
    with pytest.warns(UserWarning, match=r'x/y\.tif: 2 non-finite pixel'):
        CheckInputs()(results)


def test_the_check_goes_after_loading_in_every_pipeline_once():
    load = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
    pipeline = load + [dict(type='PackSegInputs')]
    cfg = Config(dict(
        model=dict(decode_head=dict(num_classes=6, ignore_index=0)),
        train_dataloader=dict(dataset=dict(
            type='RepeatDataset', times=2,
            dataset=dict(type='X', pipeline=list(pipeline)))),
        val_dataloader=dict(dataset=dict(
            type='X', pipeline=[dict(type='mmdet.LoadImageFromFile'),
                                dict(type='Resize')])),
        test_dataloader=None))
    keys = ['train_dataloader', 'val_dataloader', 'test_dataloader']
    add_input_checks(cfg, keys)
    add_input_checks(cfg, keys)
    check = dict(type='cait_mm.CheckInputs', num_classes=6, ignore_index=0)
    assert cfg.train_dataloader.dataset.dataset.pipeline == load + [
        check, dict(type='PackSegInputs')]
    assert [t['type'] for t in cfg.val_dataloader.dataset.pipeline] == [
        'mmdet.LoadImageFromFile', 'cait_mm.CheckInputs', 'Resize']
    # no segmentation head: the image check only
    cfg = Config(dict(model=dict(), train_dataloader=dict(
        dataset=dict(type='X', pipeline=list(load)))))
    add_input_checks(cfg, ['train_dataloader'])
    assert cfg.train_dataloader.dataset.pipeline[-1] == dict(
        type='cait_mm.CheckInputs', num_classes=None, ignore_index=255)
