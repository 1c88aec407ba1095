import os.path as osp

import pytest
from mmengine.config import Config

from cait_mm.utils.dataset_paths import check_dataset_paths


def _cfg(data_root, dataset_type='cait_mm.DemoShapesDataset'):
    dataset = dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'))
    return Config(
        dict(
            train_dataloader=dict(
                dataset=dict(type='RepeatDataset', times=2, dataset=dataset)),
            val_dataloader=None))


def test_missing_data_names_the_path_and_how_to_make_it(tmp_path):
    root = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(_cfg(root), ['train_dataloader', 'val_dataloader'])
    assert root in str(err.value)
    assert f'tools/misc/make_demo_data.py --out {root}' in str(err.value)

    with pytest.raises(FileNotFoundError, match='ADEChallengeData2016'):
        check_dataset_paths(_cfg(root, 'ADE20KDataset'), ['train_dataloader'])


def test_missing_subfolder_is_named(tmp_path):
    (tmp_path / 'images' / 'training').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='annotations/training'):
        check_dataset_paths(_cfg(str(tmp_path)), ['train_dataloader'])
    (tmp_path / 'annotations' / 'training').mkdir(parents=True)
    # the folders exist but hold no image the dataset looks for
    with pytest.raises(FileNotFoundError,
                       match='found no image ending in ".jpg" in '
                       f'"{tmp_path}/images/training"'):
        check_dataset_paths(_cfg(str(tmp_path)), ['train_dataloader'])
    (tmp_path / 'images' / 'training' / 'sub').mkdir()
    (tmp_path / 'images' / 'training' / 'sub' / 'a.jpg').write_bytes(b'')
    check_dataset_paths(_cfg(str(tmp_path)), ['train_dataloader'])


@pytest.mark.parametrize('dataset_type, tool', [
    ('cait_mm.ISBIMembraneDataset', 'isbi_membrane.py'),
    ('cait_mm.DubaiAerialDataset', 'dubai_aerial.py'),
])
def test_real_datasets_name_their_converter(tmp_path, dataset_type, tool):
    root = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(_cfg(root, dataset_type), ['train_dataloader'])
    assert (f'python tools/dataset_converters/{tool} --src SRC --out {root}'
            in str(err.value))


def _coco_cfg(data_root, classes=None, metric_ann=None):
    dataset = dict(
        type='CocoDataset',
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'))
    if classes is not None:
        dataset['metainfo'] = dict(classes=classes)
    return Config(
        dict(
            val_dataloader=dict(dataset=dataset),
            val_evaluator=dict(type='CocoMetric', ann_file=metric_ann,
                               metric=['bbox', 'segm'])))


def test_coco_style_checks_images_and_ann_file(tmp_path):
    root = str(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(_coco_cfg(root), ['val_dataloader'])
    assert osp.join(root, 'val2017/') in str(err.value)
    assert 'Put COCO 2017 under' in str(err.value)
    (tmp_path / 'val2017').mkdir()
    with pytest.raises(FileNotFoundError,
                       match='annotations/instances_val2017.json'):
        check_dataset_paths(_coco_cfg(root), ['val_dataloader'])
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'instances_val2017.json').write_text('{}')
    check_dataset_paths(_coco_cfg(root), ['val_dataloader'])
    # CocoMetric reads its own ann_file
    metric_ann = str(tmp_path / 'elsewhere.json')
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(_coco_cfg(root, metric_ann=metric_ann),
                            ['val_dataloader'])
    assert f'val_evaluator: ann_file "{metric_ann}"' in str(err.value)
    assert 'Put COCO 2017 under' in str(err.value)


def test_demo_scenes_as_coco_point_to_the_generator(tmp_path):
    from cait_mm.utils.dataset_paths import DEMO_INSTANCE_CLASSES
    root = str(tmp_path / 'demo')
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(_coco_cfg(root, DEMO_INSTANCE_CLASSES),
                            ['val_dataloader'])
    assert f'tools/misc/make_demo_data.py --out {root}' in str(err.value)


def test_imagenet_layouts_are_checked(tmp_path):
    """mmpretrain's ImageNet(split=...) reads <data_root>/<split>; its
    CustomDataset takes data_prefix as a string."""
    def cfg(dataset):
        return Config(dict(train_dataloader=dict(dataset=dataset)))

    imagenet = dict(type='ImageNet', data_root=str(tmp_path), split='train')
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(cfg(imagenet), ['train_dataloader'])
    assert str(tmp_path / 'train') in str(err.value)
    assert 'meta/train.txt' in str(err.value)
    (tmp_path / 'train').mkdir()
    check_dataset_paths(cfg(imagenet), ['train_dataloader'])

    folders = dict(type='CustomDataset', data_root=str(tmp_path),
                   data_prefix='val')
    with pytest.raises(FileNotFoundError, match='class folders'):
        check_dataset_paths(cfg(folders), ['train_dataloader'])
    (tmp_path / 'val').mkdir()
    check_dataset_paths(cfg(folders), ['train_dataloader'])
