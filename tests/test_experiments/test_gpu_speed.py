"""experiments/gpu_speed.py and the runner's tables: the plan names what
exists, the commands are the benchmark's, and a tiny plan runs end to end
on the CPU (compiled tables compiled ahead, then measured)."""
import json
import os.path as osp

from cait_mm.analysis.benchmark import Entry
from experiments import runner
from ..conftest import REPO

GPU = runner.load_experiment(osp.join(REPO, 'experiments/gpu_speed.py'))
TINY = osp.join(REPO, 'tests/data/configs/demo_tiny.py')
R = '@model.backbone.token_reducer'


def test_the_plan_names_tables_and_entries_that_exist():
    for plan in (GPU['plan'], GPU['quick']):
        assert len(plan) == len(set(plan))
        assert all(step in GPU['tables'] or step == 'test_py'
                   for step in plan)
    used = {k for t in GPU['tables'].values() for k in t['entries']}
    assert used | set(GPU['test_py']['entries']) <= set(GPU['entries'])
    for spec in GPU['entries'].values():
        assert osp.isfile(osp.join(REPO, Entry.parse(spec).config)), spec


def test_tables_without_cuda_leave_the_triton_rows_and_shrink():
    cuda = runner.table_steps(GPU)['e_upernet_s_512_b8']
    cpu = runner.table_steps(GPU, smoke=True)['e_upernet_s_512_b8']
    assert 'atme-triton' in cuda['labels'] and cuda['device'] == 'cuda'
    assert 'atme-triton' not in cpu['labels'] and cpu['device'] == 'cpu'
    assert cuda['labels'][0] == cpu['labels'][0] == 'deit-s'
    assert cuda['options'][cuda['options'].index('--shape') + 1] == '512'
    assert cpu['options'][cpu['options'].index('--shape') + 1] == '64'
    # the rows matched to the first entry's FLOPs stay with the table
    assert cpu['rows'] == ['--flops-target', '0.495', '--reducers', 'ToMe',
                           'EViT']
    command = runner.benchmark_command(cuda, GPU, '/out', 'e_x')
    assert command[:2] == ['tools/analysis_tools/benchmark.py',
                           GPU['entries']['deit-s']]
    assert '--compile' not in command and '--amp' in command


def test_a_tiny_plan_runs_end_to_end(tmp_path):
    experiment = dict(
        device='cuda', options=['--profile'],
        entries={'dense': TINY,
                 'atme': f'{TINY}{R}.type=ATME{R}.schedule=[(0,h,0.5)]'},
        tables={
            'e_tiny': dict(entries=['dense', 'atme'],
                           options=['--part', 'backbone', '--shape', '96',
                                    '96', '--flops-target', '0.8',
                                    '--reducers', 'ToMe']),
            'c_tiny': dict(entries=['dense'],
                           options=['--part', 'backbone', '--shape', '96',
                                    '96'])},
        plan=['e_tiny', 'c_tiny'], quick=['e_tiny'],
        smoke=dict(device='cpu', images=0, warmup=0,
                   options={'--shape': ['64', '64'], '--warmup': ['1'],
                            '--repeats': ['1']},
                   compile_options=['--compile-backend', 'eager']))
    summary = runner.run_tables(experiment, str(tmp_path), smoke=True,
                                parallel=1, log=lambda _: None)
    eager = json.loads((tmp_path / 'e_tiny.json').read_text())
    compiled = json.loads((tmp_path / 'c_tiny.json').read_text())
    assert [r['name'] for r in eager['results']][:2] == ['dense', 'atme']
    assert len(eager['results']) == 3  # the ToMe row at 0.8 block FLOPs
    assert eager['setting']['shape'] == [64, 64]
    assert compiled['setting']['mode'] != eager['setting']['mode']
    # each compiled row was compiled ahead in a process of its own
    assert len(list((tmp_path / 'work' / 'warm').glob('c_tiny-*.json'))) \
        == 1
    assert summary.splitlines()[0].startswith('- c_tiny (')
    assert 'compiled): dense 1.00x' in summary.splitlines()[0]
    assert (tmp_path / 'summary.md').read_text() == summary
    # a table already written is not measured again
    (tmp_path / 'e_tiny.md').unlink()
    runner.run_tables(experiment, str(tmp_path), smoke=True, parallel=1,
                      log=lambda _: None)
    assert not (tmp_path / 'e_tiny.md').exists()


def test_the_targets_name_tables_and_rows_the_plan_measures():
    # what the steps write: a table each, test_py writes test_compile
    written = {'test_compile' if step == 'test_py' else step
               for step in GPU['plan'] + GPU['quick']}
    for target in GPU['targets']:
        assert target['at_least'] > 0 and target['what']
        for table in target['tables']:
            assert table in written, table
            entries = GPU['test_py']['entries'] if table == 'test_compile' \
                else GPU['tables'][table]['entries']
            for row in target['rows']:
                for name in row.split(' / '):
                    name = name.strip()
                    base = name[:-len(' bound')] if name.endswith(
                        ' bound') else name
                    assert base in entries, (table, row)
                    if name != base:  # a bound row needs --bound
                        assert '--bound' in GPU['tables'][table]['options']


def _table(path, device, rows):
    path.write_text(json.dumps(dict(
        setting=dict(device=device, device_name='GPU X', mode='eager'),
        results=[dict(name=n, speedup=v) for n, v in rows])))


def test_the_summary_says_which_targets_are_met(tmp_path):
    experiment = dict(device='cuda', targets=[
        dict(what='eager', tables=['e_a', 'e_b'], rows=['fast', 'slow'],
             at_least=1.5),
        dict(what='bound', tables=['e_a'], rows=['fast / fast bound'],
             at_least=0.9),
        dict(what='compiled', tables=['c_a'], rows=['fast'], at_least=1.2)])
    _table(tmp_path / 'e_b.json', 'cuda',
           [('dense', 1.0), ('fast', 1.6), ('slow', 1.2),
            ('fast bound', 1.9)])
    summary = runner.write_summary(experiment, str(tmp_path))
    assert summary.startswith('- e_b (GPU X, eager): dense 1.00x, fast 1.60x')
    rows = runner.target_rows(experiment['targets'], {
        'e_b': {'dense': 1.0, 'fast': 1.6, 'slow': 1.2, 'fast bound': 1.9}})
    assert [(r['table'], r['row'], r['met']) for r in rows] == [
        ('e_b', 'fast', True), ('e_b', 'slow', False),
        (None, 'fast / fast bound', None), (None, 'fast', None)]
    assert '| eager | e_b | fast | 1.60x | 1.5x | met |' in summary
    assert '| eager | e_b | slow | 1.20x | 1.5x | **missed** |' in summary
    assert '| compiled | - | fast | not measured | 1.2x |  |' in summary
    # the first table listed wins, and 'A / B' is A's ratio over B's
    _table(tmp_path / 'e_a.json', 'cuda',
           [('dense', 1.0), ('fast', 1.7), ('fast bound', 2.0)])
    summary = runner.write_summary(experiment, str(tmp_path))
    assert '| eager | e_a | fast | 1.70x | 1.5x | met |' in summary
    assert '| bound | e_a | fast / fast bound | 0.85x | 0.9x | **missed** |' \
        in summary
    assert (tmp_path / 'summary.md').read_text() == summary
    # tables measured elsewhere (a smoke run) are not held to the targets
    _table(tmp_path / 'c_a.json', 'cpu', [('dense', 1.0), ('fast', 3.0)])
    summary = runner.write_summary(experiment, str(tmp_path))
    assert 'Targets not checked' in summary and '| compiled |' not in summary
