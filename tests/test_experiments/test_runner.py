"""experiments/runner.py and the real-data experiments: their rows, their
overrides and the order in which the runner runs the tools (the runs
themselves train for minutes: docs/results/real_data.md)."""
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config, DictAction

from experiments import runner as experiment
from ..conftest import REPO

REDUCERS = experiment.load_experiment(
    osp.join(REPO, 'experiments/real_data/reducers.py'))
WHOLE = experiment.load_experiment(
    osp.join(REPO, 'experiments/real_data/whole_model.py'))
PRESET = experiment.preset_flops(REDUCERS)
TEST_GRID = (32, 32)
ATME_T_30 = [(2, 'h', 1.0), (3, 'v', 1.0), (4, 'h', 1.0), (5, 'v', 1.0)]


def _parse(args):
    """``--cfg-options`` strings as tools/train.py and tools/test.py read
    them (mmengine's DictAction)."""
    parsed = {}
    for arg in args:
        key, value = arg.split('=', 1)
        parsed[key] = DictAction._parse_iterable(value)
    return parsed


def cpu_rows(dataset):
    """The rows of both real-data experiments (their dense rows are one
    row: the same name, config and work dir)."""
    rows = experiment.rows_for(REDUCERS, dataset)
    whole = experiment.rows_for(WHOLE, dataset)
    assert whole[0] == rows[0]
    return rows + whole[1:]


def _row(dataset, name):
    return next(r for r in cpu_rows(dataset) if r.name == name)


def test_the_runner_finds_its_repository():
    assert experiment.REPO == REPO
    for tool in ('train.py', 'test.py', 'deployment/export_compressed.py'):
        assert osp.isfile(osp.join(experiment.REPO, 'tools', tool))


@pytest.mark.parametrize('dataset', ['membrane', 'dubai'])
def test_rows_name_existing_configs_and_rows(dataset):
    rows = cpu_rows(dataset)
    names = [r.name for r in rows]
    assert names[0] == 'dense' and len(set(names)) == len(names)
    for row in rows:
        assert osp.isfile(osp.join(REPO, row.config)), row.config
        assert row.config.startswith('configs/upernet/upernet_')
        assert row.config.endswith(f'_{dataset}_cpu.py')
        assert row.reuse is None or row.reuse in names
        # a fine-tuned row starts from a row trained before it
        assert row.init_from is None or row.init_from in names[
            :names.index(row.name)]
        # a reused checkpoint is trained without the row's own options
        assert not (row.reuse and row.options), row.name
        # the reducer is set through its one slot; CDCP settings through
        # the config's one hook; a fine-tuning row may set its rate and
        # its length
        for key in {**row.options, **row.test_options}:
            assert key.startswith(('model.backbone.token_reducer.',
                                   'custom_hooks.0.')) or (
                row.init_from and key in ('optim_wrapper.optimizer.lr',
                                          *WHOLE['long_schedule'])), key
            if key.startswith('custom_hooks.0.'):
                hook = Config.fromfile(osp.join(REPO, row.config)
                                       ).custom_hooks[0]
                assert hook.type == 'cait_mm.CDCPHook', row.name
    # the quarter-head row prunes the head less, the backbone alike
    quarter = Config.fromfile(osp.join(REPO, rows[names.index(
        'cait-atme-cdcp-whole-25')].config))
    quarter.merge_from_dict(
        rows[names.index('cait-atme-cdcp-whole-25')].options)
    assert quarter.custom_hooks[0].ratios == dict(
        qk=0.5, v=0.5, mlp=0.5, ppm=0.25, lateral=0.25, fpn=0.25, fuse=0.25)
    # the fine-tuning variants: the dense checkpoint, the ramp moved forward
    early = rows[names.index('cait-atme-cdcp-whole-ft-early')]
    cfg = Config.fromfile(osp.join(REPO, early.config))
    cfg.merge_from_dict(early.options)
    hook = cfg.custom_hooks[0]
    assert (hook.begin, hook.end, hook.interval) == (0, 300, 50)
    assert early.init_from == 'dense' and early.export
    slow = rows[names.index('cait-atme-cdcp-whole-ft-lr1e-4')]
    assert slow.options == {'optim_wrapper.optimizer.lr': 1e-4}
    # the long fine-tuning and its control: the same 1200 iterations, the
    # learning rate decaying to zero at the new end, the ramp stretched
    for name in ('cait-atme-cdcp-whole-ft-long', 'dense-ft-long'):
        row = rows[names.index(name)]
        cfg = Config.fromfile(osp.join(REPO, row.config))
        cfg.merge_from_dict(row.options)
        assert cfg.train_cfg.max_iters == cfg.train_cfg.val_interval == 1200
        assert cfg.param_scheduler[1].begin == 50
        assert cfg.param_scheduler[1].end == 1200
        assert row.init_from == 'dense'
        if name == 'dense-ft-long':
            assert row.config == rows[names.index('dense')].config
            assert not cfg.get('custom_hooks')
        else:
            hook = cfg.custom_hooks[0]
            assert (hook.begin, hook.end, hook.interval) == (0, 600, 100)
            assert hook.end < cfg.train_cfg.max_iters


@pytest.mark.parametrize('dataset', ['membrane', 'dubai'])
@pytest.mark.parametrize('name, reducer', [
    ('atme-training-free', dict(type='ATME', schedule='deit-t')),
    ('tps-training-free', dict(type='TPS', blocks=(3, 6, 9),
                               keep_ratio=0.7)),
    ('atme-30-training-free', dict(type='ATME', schedule=ATME_T_30)),
    ('atme-few-training-free', dict(type='ATME', schedule='deit-t-few')),
])
def test_training_free_rows_add_the_reducer_to_the_dense_config(
        dataset, name, reducer):
    """The overrides, as tools/test.py parses them, create the reducer in
    the dense config (which has none) and nothing else changes."""
    row = _row(dataset, name)
    dense = _row(dataset, 'dense')
    assert row.config == dense.config and row.reuse == 'dense'
    cfg = Config.fromfile(osp.join(REPO, row.config))
    assert 'token_reducer' not in cfg.model.backbone
    before = cfg.to_dict()
    args = experiment.cfg_options(f'/data/{dataset}', row.all_test_options)
    cfg.merge_from_dict(_parse(args))
    got = cfg.to_dict()
    backbone = got['model']['backbone'].pop('token_reducer')
    if 'schedule' in backbone and isinstance(backbone['schedule'], list):
        backbone['schedule'] = [tuple(s) for s in backbone['schedule']]
    assert backbone == reducer
    for loader in experiment.LOADERS:
        assert got[loader]['dataset'].pop('data_root') == f'/data/{dataset}'
        before[loader]['dataset'].pop('data_root')
    assert got == before


def test_training_free_reducers_build_on_the_dense_model():
    from cait_mm.analysis.model_from_config import build_model
    for name, kind in (('atme-training-free', 'ATME'),
                       ('tps-training-free', 'TPS')):
        row = _row('membrane', name)
        overrides = _parse(experiment.cfg_options(None, row.all_test_options))
        model = build_model(osp.join(REPO, row.config), overrides)
        assert type(model.backbone.token_reducer).__name__ == kind


def test_every_row_builds_its_model_for_training_and_testing():
    """Each row's config with its overrides, as the tools read them, gives
    a model: a reducer setting that conflicts with the config's own (a
    steady rate on a CAIT config that sets ATME's schedule) fails here,
    not minutes into a run."""
    from cait_mm.analysis.model_from_config import build_model
    built = set()
    for row in cpu_rows('membrane'):
        trains = [] if row.reuse else [row.options]
        for options in (*trains, row.all_test_options):
            args = experiment.cfg_options(None, options)
            if (row.config, *args) in built:
                continue
            built.add((row.config, *args))
            try:
                build_model(osp.join(REPO, row.config), _parse(args))
            except Exception as error:
                raise AssertionError(f'row {row.name}: {error}') from error


def test_trained_30_percent_row_replaces_the_cait_schedule():
    row = _row('dubai', 'cait-atme-30')
    cfg = Config.fromfile(osp.join(REPO, row.config))
    assert cfg.model.backbone.token_reducer.schedule == 'deit-t'
    cfg.merge_from_dict(
        _parse(experiment.cfg_options('/data/dubai', row.all_test_options)))
    assert cfg.test_dataloader.dataset.data_root == '/data/dubai'
    reducer = cfg.model.backbone.token_reducer
    assert reducer.type == 'ATME'
    assert [tuple(e) for e in reducer.schedule] == ATME_T_30


@pytest.mark.parametrize('dataset', ['membrane', 'dubai'])
def test_few_merge_rows_use_the_few_preset_at_the_preset_flops(dataset):
    """The trained few-merge row replaces the CAIT config's schedule by
    deit-t-few, for training and testing; both few rows have at most 2
    reduction points and the deit-t preset's block FLOPs within 3%."""
    from cait_mm.core import build_token_reducer
    from cait_mm.core.atme_schedules import parse_schedule
    trained = _row(dataset, 'cait-atme-few')
    assert trained.config == _row(dataset, 'cait-atme').config
    assert trained.reuse is None and not trained.test_options
    cfg = Config.fromfile(osp.join(REPO, trained.config))
    cfg.merge_from_dict(_parse(
        experiment.cfg_options(f'/data/{dataset}', trained.options)))
    assert cfg.model.backbone.token_reducer.type == 'ATME'
    assert cfg.model.backbone.token_reducer.schedule == 'deit-t-few'
    free = _row(dataset, 'atme-few-training-free')
    assert free.reuse == 'dense' and not free.options
    assert len(parse_schedule('deit-t-few', 12)) <= 2
    for row in (trained, free):
        settings = {k.rsplit('.', 1)[1]: v
                    for k, v in row.all_test_options.items()}
        fraction = build_token_reducer(settings, 12, 192).flops_fraction(
            TEST_GRID)
        assert abs(fraction - PRESET) <= 0.03 * PRESET


def test_experiment_files_are_checked(tmp_path):
    """A row with a key the runner does not know, or one that reuses a row
    not before it, fails naming the row."""
    bad = dict(REDUCERS, rows=[dict(name='dense', model='deit_t',
                                    description='', reducers={})])
    with pytest.raises(ValueError, match=r"row dense: unknown keys "
                       r"\['reducers'\]"):
        experiment.rows_for(bad, 'membrane')
    bad['rows'] = [dict(name='free', model='deit_t', description='',
                        reuse='dense')]
    with pytest.raises(ValueError, match='row free needs row dense'):
        experiment.rows_for(bad, 'membrane')
    with pytest.raises(ValueError, match='dataset "ade" is not one of'):
        experiment.rows_for(REDUCERS, 'ade')
    (tmp_path / 'empty.py').write_text('rows = []\n')
    with pytest.raises(ValueError, match=r"sets \['config', 'datasets'\]"):
        experiment.load_experiment(str(tmp_path / 'empty.py'))


TEST_LOG = """11/27 09:30:04 - mmengine - INFO - per class results:
11/27 09:30:04 - mmengine - INFO -
+------------+-------+-------+
|   Class    |  IoU  |  Acc  |
+------------+-------+-------+
| background |  98.3 | 99.05 |
|  membrane  |  12.5 | 20.01 |
+------------+-------+-------+
11/27 09:30:04 - mmengine - INFO - Iter(test) [6/6]  mIoU: 55.4000
"""


WIDTHS = dict(ppm=[64] * 4, lateral=[64], fpn=[64] * 3, fuse=[64])


def test_run_rows_trains_exports_and_tests_in_order(tmp_path, monkeypatch):
    """Without training: every tool call is recorded and its outputs faked.
    Reused rows are not trained, the exported row is tested from its
    export, and test overrides reach tools/test.py only."""
    calls = []

    def fake_run(args, log):
        calls.append(list(args))
        tool, work_dir = args[0], None
        if '--work-dir' in args:
            work_dir = args[args.index('--work-dir') + 1]
        if tool == 'tools/train.py':
            os.makedirs(work_dir, exist_ok=True)
            with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
                f.write(osp.join(work_dir, 'iter_600.pth'))
        elif tool == 'tools/deployment/export_compressed.py':
            torch.save(dict(state_dict={}, meta=dict(cait_mm=dict(
                heads=dict(decode_head=dict(channel_widths=WIDTHS))))),
                args[3])
        elif tool == 'tools/test.py':
            os.makedirs(osp.join(work_dir, '20240101_000000'))
            with open(osp.join(work_dir, '20240101_000000',
                               '20240101_000000.json'), 'w') as f:
                f.write(json.dumps(dict(mIoU=50.0)) + '\n')
            with open(log, 'w') as f:  # what mmseg's IoUMetric prints
                f.write(TEST_LOG)

    monkeypatch.setattr(experiment, '_run', fake_run)
    rows = [_row('membrane', n) for n in ('dense', 'atme-training-free',
                                          'cait-atme-cdcp')]
    results = experiment.run_rows(rows, '/data/m', str(tmp_path),
                                  log=lambda _: None)
    tools = [c[0] for c in calls]
    assert tools == [
        'tools/train.py', 'tools/test.py', 'tools/test.py', 'tools/train.py',
        'tools/deployment/export_compressed.py', 'tools/test.py'
    ]
    dense_ckpt = str(tmp_path / 'dense' / 'train' / 'iter_600.pth')
    # the training-free row tests the dense checkpoint with ATME added
    assert calls[2][2] == dense_ckpt
    assert 'model.backbone.token_reducer.type=ATME' in calls[2]
    assert not any('token_reducer' in a for a in calls[0] + calls[1])
    exported = str(tmp_path / 'cait-atme-cdcp' / 'compressed.pth')
    assert calls[4][3] == exported and calls[5][2] == exported
    assert [r['metrics']['mIoU'] for r in results] == [50.0] * 3
    assert results[0]['per_class'] == dict(background=98.3, membrane=12.5)
    # the benchmark rebuilds the exported row from its file (pruned heads
    # included, as tools/test.py does), the others from their configs
    entries = experiment.bench_entries(rows, results)
    assert entries[1].overrides == rows[1].test_options
    assert [e.checkpoint for e in entries] == [None, None, exported]


def _fake_tools(calls):
    """A stand-in for the tool runner: records each call in ``calls`` and
    writes what the tool would (a last checkpoint, an empty export, a test's
    metrics and per-class log)."""

    def fake_run(args, log):
        calls.append(list(args))
        if args[0] == 'tools/deployment/export_compressed.py':
            torch.save(dict(state_dict={}, meta=dict(cait_mm=dict())),
                       args[3])
            return
        work_dir = args[args.index('--work-dir') + 1]
        os.makedirs(work_dir, exist_ok=True)
        if args[0] == 'tools/train.py':
            with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
                f.write(osp.join(work_dir, 'iter_600.pth'))
        else:
            os.makedirs(osp.join(work_dir, 'run'), exist_ok=True)
            with open(osp.join(work_dir, 'run', 'run.json'), 'w') as f:
                f.write(json.dumps(dict(mIoU=50.0)) + '\n')
            with open(log, 'w') as f:
                f.write(TEST_LOG)

    return fake_run


def test_an_interrupted_training_is_resumed_and_a_finished_one_reused(
        tmp_path, monkeypatch):
    """A row whose training died has a last checkpoint but no TRAINED
    marker: it is resumed, not taken as trained; a finished row is not
    trained again."""
    calls = []
    monkeypatch.setattr(experiment, '_run', _fake_tools(calls))
    rows = [_row('membrane', 'dense')]
    died = tmp_path / 'dense' / 'train'
    died.mkdir(parents=True)
    (died / 'last_checkpoint').write_text(str(died / 'iter_400.pth'))
    experiment.run_rows(rows, '/data/m', str(tmp_path), log=lambda _: None)
    assert calls[0][0] == 'tools/train.py' and '--resume' in calls[0]
    assert (died / experiment.TRAINED).read_text().strip() == str(
        died / 'iter_600.pth')
    calls.clear()
    experiment.run_rows(rows, '/data/m', str(tmp_path), log=lambda _: None)
    assert [c[0] for c in calls] == ['tools/test.py']


def test_a_fine_tuned_row_starts_from_its_seeds_dense_checkpoint(
        tmp_path, monkeypatch):
    """The fine-tuned row's training loads the dense row's trained
    checkpoint of the same seed (mmengine's load_from); the dense row's own
    training does not."""
    calls = []
    monkeypatch.setattr(experiment, '_run', _fake_tools(calls))
    rows = experiment.with_seeds(
        [_row('membrane', n) for n in ('dense', 'cait-atme-cdcp-whole-ft')],
        [0, 1])
    assert [r.init_from for r in rows] == [None, 'dense', None,
                                           'dense-seed1']
    experiment.run_rows(rows, '/data/m', str(tmp_path), log=lambda _: None)
    trainings = [_parse(c[c.index('--cfg-options') + 1:]) for c in calls
                 if c[0] == 'tools/train.py']
    assert [t.get('load_from') for t in trainings] == [
        None, str(tmp_path / 'dense' / 'train' / 'iter_600.pth'), None,
        str(tmp_path / 'dense-seed1' / 'train' / 'iter_600.pth')]
    assert trainings[3]['randomness.seed'] == 1


def test_repeats_zero_writes_the_accuracy_table_untimed(
        tmp_path, monkeypatch):
    """--repeats 0: the rows run and are summarised; nothing is timed."""
    calls = []
    monkeypatch.setattr(experiment, '_run', _fake_tools(calls))
    monkeypatch.setattr(experiment, 'benchmark', None)  # never called
    rows = [_row('membrane', 'dense')]
    text = experiment.run_experiment(rows, '/data/m', str(tmp_path),
                                     (64, 64), repeats=0, seeds=(0, 1),
                                     log=lambda _: None)
    assert 'Speed: not timed (--repeats 0).' in text
    saved = json.loads((tmp_path / 'results.json').read_text())
    assert saved['speed'] == [] and saved['summary'][0]['seeds'] == 2
    assert (tmp_path / 'results.md').read_text() == text
    assert not (tmp_path / 'results.png').exists()


def test_rows_repeat_per_seed_and_are_summarised_with_their_spread():
    rows = [_row('membrane', n) for n in ('dense', 'tome',
                                          'tome-training-free')]
    runs = experiment.with_seeds(rows, [0, 1, 2])
    names = [r.name for r in runs]
    assert names[:3] == ['dense', 'tome', 'tome-training-free']
    assert names[3:6] == ['dense-seed1', 'tome-seed1',
                          'tome-training-free-seed1']
    assert runs[4].options == {'randomness.seed': 1}
    assert runs[0].options == {}  # seed 0 is the configs' own
    # a training-free row reuses its seed's dense checkpoint, untrained
    assert runs[5].reuse == 'dense-seed1' and runs[5].options == {}
    results = [
        dict(name=r.name, description=r.description,
             metrics=dict(mIoU=value), per_class=dict(a=value, b=1.))
        for r, value in zip(runs, [50., 40., 30., 52., 44., 30., 54., 42.,
                                   33.])]
    summary = experiment.summarise(results, 'mIoU')
    assert [s['name'] for s in summary] == [r.name for r in rows]
    assert summary[0]['mean'] == 52. and summary[0]['std'] == 2.
    assert summary[1]['seeds'] == 3 and summary[1]['per_class']['a'] == 42.

    table = experiment.accuracy_table(summary, 'mIoU', 'T')
    assert '| dense | DeiT-T, no compression | 52.00 +- 2.00 (3 seeds) | ' \
        '100.0% |' in table
    assert '| tome-training-free |' in table and '| row | a | b |' in table


def test_per_class_reads_the_last_table(tmp_path):
    log = tmp_path / 'test.log'
    log.write_text(TEST_LOG.replace('12.5', '99.0') + TEST_LOG)
    assert experiment.per_class(str(log)) == dict(background=98.3,
                                                  membrane=12.5)


@pytest.mark.parametrize('dataset', ['membrane', 'dubai'])
def test_peer_rows_compare_at_equal_flops(dataset):
    """Trained and training-free, each peer at the ATME preset's block
    FLOPs (and at 35%), within 3%."""
    from cait_mm.core import build_token_reducer
    rows = {r.name: r for r in cpu_rows(dataset)}
    target = PRESET
    for name in ('tps-matched-training-free', 'tome-training-free',
                 'evit-training-free', 'atme-adaptive-training-free',
                 'atme-adaptive-ratio-training-free',
                 'cait-atme-adaptive-ratio',
                 'atme-35-training-free', 'atme-adaptive-35-training-free',
                 'atme-adaptive-ratio-35-training-free',
                 'tps-35-training-free', 'tome-35-training-free',
                 'evit-35-training-free'):
        row = rows[name]
        cfg = {k.rsplit('.', 1)[1]: v for k, v in
               row.all_test_options.items() if k.startswith(
                   'model.backbone.token_reducer.')}
        fraction = build_token_reducer(cfg, 12, 192).flops_fraction((32, 32))
        goal = 0.35 if '-35-' in name else target
        assert abs(fraction - goal) <= 0.03 * goal, name
    trained = Config.fromfile(osp.join(REPO, rows['tome'].config))
    assert trained.model.backbone.token_reducer.ratio == \
        rows['tome-training-free'].test_options[
            'model.backbone.token_reducer.ratio']


def test_steady_rate_rows_take_tomes_rate():
    """ATMEAdaptive's steady-rate rows run ToMe's rate (the same counts),
    trained and training-free."""
    rows = {r.name: r for r in cpu_rows('membrane')}
    key = 'model.backbone.token_reducer.ratio'
    for mine, tome in (('atme-adaptive-ratio-training-free',
                        'tome-training-free'),
                       ('atme-adaptive-ratio-35-training-free',
                        'tome-35-training-free')):
        assert rows[mine].test_options[key] == rows[tome].test_options[key]
        assert rows[mine].test_options[
            'model.backbone.token_reducer.type'] == 'ATMEAdaptive'
    assert rows['cait-atme-adaptive-ratio'].options[key] == rows[
        'tome-training-free'].test_options[key]


def test_the_any_pair_control_drops_only_the_neighbour_rule():
    """experiments/real_data/any_pair_control.py: each token's target is
    its most similar token with an earlier anchor, wherever it is."""
    import runpy

    from cait_mm.core import TokenState
    control = runpy.run_path(osp.join(
        REPO, 'experiments/real_data/any_pair_control.py'))
    keys = torch.nn.functional.normalize(torch.randn(1, 12, 4), dim=-1)
    keys[0, 11] = keys[0, 2]  # far apart on a 3x4 grid
    score, target = control['any_earlier_token'](
        keys, TokenState.from_grid((3, 4)))
    assert target[0, 0] == 0 and score[0, 0] == float('-inf')
    assert target[0, 11] == 2
    torch.testing.assert_close(score[0, 11], torch.tensor(1.))
    sim = keys[0] @ keys[0].T
    for t in range(1, 11):
        assert target[0, t] == sim[t, :t].argmax()
