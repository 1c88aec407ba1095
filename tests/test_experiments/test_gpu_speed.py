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
    assert summary.splitlines()[0].startswith('- c_tiny: dense 1.00x')
    assert (tmp_path / 'summary.md').read_text() == summary
    # a table already written is not measured again
    (tmp_path / 'e_tiny.md').unlink()
    runner.run_tables(experiment, str(tmp_path), smoke=True, parallel=1,
                      log=lambda _: None)
    assert not (tmp_path / 'e_tiny.md').exists()
