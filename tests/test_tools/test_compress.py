"""tools/compress.py: the dense model and every reducer at a FLOPs budget,
evaluated training-free on the config's validation set (the demo data),
and the chosen model written so that tools/test.py scores it again."""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from cait_mm.analysis.compress import REDUCERS, compress
from ..conftest import REPO, run_tool

CONFIG = osp.join(REPO, 'tests/data/configs/demo_tiny.py')


def _data_options(root):
    return {
        f'{loader}.dataset.data_root': root
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
    }


@pytest.fixture(scope='module')
def dense(tmp_path_factory):
    """The demo config's model with its initial weights, saved."""
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(CONFIG).model)
    model.init_weights()
    path = tmp_path_factory.mktemp('dense') / 'dense.pth'
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, path)
    return str(path)


def test_compress_writes_the_table_and_the_chosen_model(
        dense, demo_data, tmp_path):
    work, out = tmp_path / 'work', tmp_path / 'out'
    options = [f'{k}={v}' for k, v in _data_options(demo_data).items()]
    proc = run_tool(['tools/compress.py', CONFIG, dense, '--flops', '0.6',
                     '--work-dir', str(work), '--out', str(out),
                     '--repeats', '2', '--cfg-options', *options])
    result = json.loads((work / 'compress.json').read_text())
    rows = {row['name']: row for row in result['rows']}
    assert list(rows) == ['dense', *REDUCERS]
    assert result['metric'] == 'mIoU'
    assert rows['dense']['speedup'] == 1.
    for name in REDUCERS:
        assert rows[name]['reducer']['type'] == name
        # timed in one run; counted FLOPs fall with the block FLOPs
        assert rows[name]['speedup'] > 0
        assert rows[name]['gflops'] < rows['dense']['gflops']
        # within 3% above the budget (ATME's schedules stay under it)
        assert 0.5 < rows[name]['flops'] <= 0.6 * 1.03
    best = max(REDUCERS, key=lambda n: rows[n]['metrics']['mIoU'])
    assert result['chosen'] == best
    table = (work / 'compress.md').read_text()
    assert f'| {best} (chosen) |' in table and table in proc.stdout

    # the chosen model, scored again by tools/test.py as it is
    proc = run_tool(['tools/test.py', str(out / 'config.py'),
                     str(out / 'model.pth'), '--work-dir',
                     str(tmp_path / 'test')])
    miou = rows[best]['metrics']['mIoU']
    assert f'mIoU: {miou:.4f}' in proc.stdout + proc.stderr
    meta = torch.load(out / 'model.pth', weights_only=True)['meta']
    assert meta['cait_mm_compress']['chosen'] == best


def test_bad_input_fails_before_evaluating(dense, demo_data, tmp_path):
    data = _data_options(demo_data)
    with pytest.raises(ValueError, match='no validation set'):
        compress(CONFIG, dense, 0.5, str(tmp_path),
                 options=dict(data, val_dataloader=None))
    with pytest.raises(ValueError, match=r'must be in \(0, 1\)'):
        compress(CONFIG, dense, 1.5, str(tmp_path), options=data)
    # 4x4 patches: two blocks of four cannot lose 99% of their FLOPs
    with pytest.raises(ValueError, match='No reducer reaches 0.01') as err:
        compress(CONFIG, dense, 0.01, str(tmp_path), options=data,
                 log=lambda _: None)
    assert 'ATME' in str(err.value) and 'ToMe' in str(err.value)
    assert not (tmp_path / 'dense').exists()  # nothing was evaluated
