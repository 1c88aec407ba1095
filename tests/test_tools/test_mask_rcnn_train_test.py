"""Mask R-CNN end to end through tools/train.py and tools/test.py on the
generated COCO json."""
import json
import os.path as osp
import pickle

import pytest

from ..conftest import REPO, run_tool

CONFIG = osp.join(REPO, 'tests/data/configs/mask_rcnn_demo_tiny.py')
# training-free ATME on the dense config: dotted keys create the reducer
ATME = [
    'model.backbone.token_reducer.type=ATME',
    'model.backbone.token_reducer.schedule=[(0,h,0.5),(1,v,0.5)]'
]


def _data_options(root):
    return [
        f'{loader}.dataset.data_root={root}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ] + [
        f'{metric}.ann_file={root}/annotations/instances_validation.json'
        for metric in ('val_evaluator', 'test_evaluator')
    ]


def _assert_coco_metrics(log):
    for name in ('bbox_mAP', 'segm_mAP'):
        assert f'coco/{name}:' in log, name


@pytest.fixture(scope='module')
def trained(tmp_path_factory, demo_data):
    """One epoch (4 iterations of 2 images) with ATME, validated at its end."""
    work_dir = tmp_path_factory.mktemp('mask_rcnn')
    proc = run_tool([
        'tools/train.py', CONFIG, '--work-dir',
        str(work_dir), '--cfg-options', *ATME, *_data_options(demo_data)
    ])
    return work_dir, proc


def test_train_validates_with_coco_metrics(trained):
    work_dir, proc = trained
    log = proc.stdout + proc.stderr
    assert 'Epoch(train) [1][4/4]' in log
    _assert_coco_metrics(log)
    assert osp.isfile(work_dir / 'epoch_1.pth')


@pytest.mark.parametrize('options', [ATME, []], ids=['atme', 'atme-free'])
def test_tools_test_reports_bbox_and_segm_map(trained, demo_data, tmp_path,
                                              options):
    """The ATME-trained checkpoint, evaluated with ATME and, training-free,
    without it; --out dumps mmdet's raw detections."""
    work_dir, _ = trained
    out = tmp_path / 'dets.pkl'
    proc = run_tool([
        'tools/test.py', CONFIG,
        str(work_dir / 'epoch_1.pth'), '--work-dir',
        str(tmp_path), '--out',
        str(out), '--cfg-options', *options, *_data_options(demo_data)
    ])
    _assert_coco_metrics(proc.stdout + proc.stderr)
    metrics = json.loads(
        open(next(tmp_path.glob('*/*.json')), encoding='utf-8').read())
    for name in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert 0 <= metrics[name] <= 1
    with open(out, 'rb') as f:
        dets = pickle.load(f)
    assert len(dets) == 4
    assert {'bboxes', 'scores', 'labels',
            'masks'} <= set(dets[0]['pred_instances'])


def test_missing_coco_data_names_the_path_and_the_generator(tmp_path):
    missing = str(tmp_path / 'no_data')
    proc = run_tool([
        'tools/train.py', CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--cfg-options', *_data_options(missing)
    ],
                    check=False)
    assert proc.returncode != 0
    assert missing in proc.stderr
    assert f'tools/misc/make_demo_data.py --out {missing}' in proc.stderr
