import hashlib
import json
import os.path as osp

import cv2
import numpy as np
from pycocotools.coco import COCO

from cait_mm.datasets.demo_shapes_generator import (CLASSES,
                                                    generate_demo_dataset,
                                                    render_scene)


def _digest(root):
    h = hashlib.sha256()
    for split in ('training', 'validation'):
        for i in range(2):
            for rel in (f'images/{split}/demo_{i:05d}.jpg',
                        f'annotations/{split}/demo_{i:05d}.png',
                        f'annotations/instances_{split}.json'):
                with open(osp.join(root, rel), 'rb') as f:
                    h.update(f.read())
    return h.hexdigest()


def test_generation_is_deterministic_per_seed(tmp_path):
    a, b, c = (str(tmp_path / n) for n in 'abc')
    for root, seed in ((a, 0), (b, 0), (c, 1)):
        generate_demo_dataset(root, seed=seed, num_train=2, num_val=2,
                              size=(48, 64))
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_coco_instances_agree_with_the_label_maps(demo_data):
    coco = COCO(osp.join(demo_data, 'annotations/instances_validation.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == \
        list(CLASSES[1:])
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        label = cv2.imread(
            osp.join(demo_data, 'annotations/validation',
                     info['file_name'].replace('.jpg', '.png')),
            cv2.IMREAD_UNCHANGED)
        painted = np.zeros_like(label)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            mask = coco.annToMask(ann).astype(bool)
            assert ann['area'] == mask.sum()
            # visible masks of different instances never overlap
            assert (painted[mask] == 0).all()
            painted[mask] = ann['category_id']
        # every labelled pixel belongs to exactly one instance of its class,
        # except specks under 16 pixels, which are not instances
        disagree = (painted != label).sum()
        assert disagree < 16 * 5


def test_scene_content():
    image, label, instances = render_scene(7, 'training', 3, (80, 96))
    assert image.shape == (80, 96, 3) and image.dtype == np.uint8
    assert label.shape == (80, 96) and label.max() < len(CLASSES)
    assert 1 <= len(instances) <= 5
    for cls, mask in instances:
        assert (label[mask] == cls).all()


def test_mmseg_dataset_reads_the_layout(demo_data):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    dataset = DATASETS.build(
        dict(
            type='cait_mm.DemoShapesDataset',
            data_root=demo_data,
            data_prefix=dict(
                img_path='images/training',
                seg_map_path='annotations/training'),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')
            ]))
    assert len(dataset) == 8
    assert dataset.metainfo['classes'] == CLASSES
    sample = dataset[0]
    seg = sample['data_samples'].gt_sem_seg.data
    assert seg.shape == (1, 64, 64) and int(seg.max()) < len(CLASSES)
    with open(osp.join(demo_data, 'annotations/instances_training.json')) as f:
        assert len(json.load(f)['images']) == 8
