"""The CPU membrane config through tools/train.py and tools/test.py, on a
converted fake ISBI source (2 iterations: plumbing, not accuracy)."""
import json
import os.path as osp

import pytest

from cait_mm.datasets.converters import convert_isbi_membrane
from ..conftest import REPO, run_tool
from ..test_datasets.fake_sources import write_isbi_source

CONFIG = osp.join(REPO, 'configs/upernet/upernet_deit_t_membrane_cpu.py')


@pytest.fixture(scope='module')
def membrane_root(tmp_path_factory):
    src = str(tmp_path_factory.mktemp('isbi_src'))
    out = str(tmp_path_factory.mktemp('isbi'))
    write_isbi_source(src, size=(64, 64))
    convert_isbi_membrane(src, out)
    return out


def _options(root):
    return [
        f'{loader}.{key}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        for key in (f'dataset.data_root={root}', 'num_workers=0',
                    'persistent_workers=False')
    ]


def test_membrane_cpu_config_trains_and_tests(membrane_root, tmp_path):
    run_tool([
        'tools/train.py', CONFIG, '--work-dir',
        str(tmp_path / 'train'), '--cfg-options', 'train_cfg.max_iters=2',
        'train_cfg.val_interval=2', 'train_dataloader.batch_size=2',
        *_options(membrane_root)
    ])
    assert (tmp_path / 'train' / 'iter_2.pth').is_file()
    proc = run_tool([
        'tools/test.py', CONFIG,
        str(tmp_path / 'train' / 'iter_2.pth'), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *_options(membrane_root)
    ])
    log = proc.stdout + proc.stderr
    assert 'membrane' in log and 'cell interior' in log
    metrics = json.loads(
        open(next((tmp_path / 'test').glob('*/*.json'))).readlines()[-1])
    assert 0 <= metrics['mIoU'] <= 100
