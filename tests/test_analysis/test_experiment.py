"""cait_mm.analysis.experiment: the real-data rows and their overrides
(the runs themselves train for minutes: docs/real_data.md)."""
import os.path as osp

import pytest
from mmengine.config import Config, DictAction

from cait_mm.analysis.experiment import _options, cpu_rows

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.mark.parametrize('dataset', ['membrane', 'dubai'])
def test_rows_name_existing_configs_and_rows(dataset):
    rows = cpu_rows(dataset)
    names = [r.name for r in rows]
    assert names[0] == 'dense' and len(set(names)) == len(names)
    for row in rows:
        assert osp.isfile(osp.join(REPO, row.config)), row.config
        assert row.reuse is None or row.reuse in names
        # a reused checkpoint is trained without the row's own options
        assert not (row.reuse and row.options), row.name


def test_options_parse_back_into_the_config():
    row = next(r for r in cpu_rows('dubai') if r.name == 'cait-atme-30')
    args = _options('/data/dubai', row.all_test_options)
    parsed = {}
    for arg in args:
        key, value = arg.split('=', 1)
        parsed[key] = DictAction._parse_iterable(value)
    cfg = Config.fromfile(osp.join(REPO, row.config))
    cfg.merge_from_dict(parsed)
    assert cfg.test_dataloader.dataset.data_root == '/data/dubai'
    schedule = [tuple(e) for e in cfg.model.backbone.token_merge.schedule]
    assert schedule == [(2, 'h', 1.0), (3, 'v', 1.0), (4, 'h', 1.0),
                        (5, 'v', 1.0)]
