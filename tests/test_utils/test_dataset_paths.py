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
    assert f'tools/make_demo_data.py --out {root}' in str(err.value)

    with pytest.raises(FileNotFoundError, match='ADEChallengeData2016'):
        check_dataset_paths(_cfg(root, 'ADE20KDataset'), ['train_dataloader'])


def test_missing_subfolder_is_named(tmp_path):
    (tmp_path / 'images' / 'training').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='annotations/training'):
        check_dataset_paths(_cfg(str(tmp_path)), ['train_dataloader'])
    (tmp_path / 'annotations' / 'training').mkdir(parents=True)
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
