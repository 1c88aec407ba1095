"""CheckInputs, NameLoadErrors and where the tools put them."""
import logging
import warnings

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger

from cait_mm.transforms import CheckInputs, NameLoadErrors
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


def test_non_finite_pixels_are_logged_by_name_or_fail(tmp_path):
    img = np.ones((3, 4, 3), np.float32)
    results = dict(img=img, img_path='x/y.tif')
    log_file = tmp_path / 'run.log'
    logger = MMLogger.get_instance('input_checks_test',
                                   log_file=str(log_file))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        CheckInputs()(results)  # finite: nothing to say
        CheckInputs()(dict(img=np.zeros((2, 2, 3), np.uint8)))
        img[1, 2, 0], img[0, 0, 1] = np.nan, np.inf
        CheckInputs()(results)  # in the run's log, not a Python warning
        with pytest.raises(ValueError, match=r'x/y\.tif: 2 non-finite '
                           'pixel values .*--non-finite skip'):
            CheckInputs(non_finite='error')(results)
    for handler in logger.handlers:
        handler.flush()
    log = log_file.read_text()
    assert 'WARNING - x/y.tif: 2 non-finite pixel values' in log
    error = [line for line in log.splitlines() if ' - ERROR - ' in line]
    assert len(error) == 1 and 'x/y.tif: 2 non-finite pixel values' in \
        error[0]
    logger.handlers.clear()
    logging.getLogger('input_checks_test').handlers.clear()


def test_a_file_that_fails_to_load_is_named(tmp_path):
    from PIL import Image
    label = tmp_path / 'label.png'
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(
        label)
    data = label.read_bytes()
    label.write_bytes(data[:len(data) // 2])  # truncated
    load = NameLoadErrors(dict(type='mmseg.LoadAnnotations'))
    with pytest.raises(RuntimeError) as error:
        load(dict(img_path='image.jpg', seg_map_path=str(label),
                  seg_fields=[], reduce_zero_label=False))
    assert str(error.value).startswith(
        f'{label}: cannot be loaded by LoadAnnotations (OSError: image file '
        'is truncated')


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
    add_input_checks(cfg, keys, fail_on_non_finite=['train_dataloader'])
    add_input_checks(cfg, keys, fail_on_non_finite=['train_dataloader'])
    check = dict(type='cait_mm.CheckInputs', num_classes=6, ignore_index=0)
    named = [dict(type='cait_mm.NameLoadErrors', transform=t) for t in load]
    assert cfg.train_dataloader.dataset.dataset.pipeline == named + [
        dict(check, non_finite='error'), dict(type='PackSegInputs')]
    val = cfg.val_dataloader.dataset.pipeline
    assert [t['type'] for t in val] == [
        'cait_mm.NameLoadErrors', 'cait_mm.CheckInputs', 'Resize']
    assert val[0]['transform'] == dict(type='mmdet.LoadImageFromFile')
    assert val[1]['non_finite'] == 'log'
    # no segmentation head: the image check only
    cfg = Config(dict(model=dict(), train_dataloader=dict(
        dataset=dict(type='X', pipeline=list(load)))))
    add_input_checks(cfg, ['train_dataloader'])
    assert cfg.train_dataloader.dataset.pipeline[-1] == dict(
        type='cait_mm.CheckInputs', num_classes=None, ignore_index=255,
        non_finite='log')
