"""tools/analysis_tools: benchmark.py, visualize_merge.py, atme_schedule.py,
match_flops.py."""
import json
import os.path as osp

import cv2
import pytest

from ..conftest import REPO, run_tool

CONFIG = osp.join(REPO, 'tests/data/configs/demo_tiny.py')
# training-free ATME on the dense config: dotted keys create the reducer
ATME = [
    'model.backbone.token_reducer.type=ATME',
    'model.backbone.token_reducer.schedule=[(0,h,0.5),(1,v,0.5)]'
]


def test_benchmark_measures_entries_side_by_side(tmp_path):
    proc = run_tool([
        'tools/analysis_tools/benchmark.py', CONFIG,
        '@'.join([CONFIG, *ATME]), '--shape', '64', '96', '--batch-size',
        '2', '--warmup', '1', '--repeats', '2', '--part', 'backbone',
        '--profile', '--out-dir', str(tmp_path)
    ])
    assert '| speed-up |' in proc.stdout
    result = json.load(open(next(tmp_path.glob('*.json'))))
    first, merged = result['results']
    assert result['setting']['part'] == 'backbone'
    assert result['setting']['batch_size'] == 2
    assert first['speedup'] == 1.0 and first['flops_ratio'] == 1.0
    assert merged['flops'] < first['flops']
    assert merged['params'] == first['params']
    assert merged['name'].endswith("schedule=[(0, 'h', 0.5), (1, 'v', 0.5)]")
    assert all(r['images_per_s'] > 0 for r in result['results'])
    # header, separator and one row per entry; then the profiled calls'
    # caption and table
    tables = next(tmp_path.glob('*.md')).read_text().split('\n\n')
    assert tables[1].count('\n| ') == 3
    assert tables[2].startswith('Profiled call')
    assert '| busy (ms) |' in tables[3] and tables[3].count('\n| ') == 3
    # --profile: where one call of each row spent its time, and how much
    # it ran (every op of the dense forward, fewer after merging)
    report = next(tmp_path.glob('*_profile.txt')).read_text()
    assert report.count('## ') == 2 and 'aten::addmm' in report
    assert 'ops run' in report
    assert all(r['busy_ms'] > 0 and 'Self CPU' in r['profile']
               and r['launches'] > 0 for r in result['results'])
    assert result['setting']['mode'] == 'eager'
    assert result['setting']['device_name']


def test_benchmark_adds_rows_at_equal_flops_after_the_entries(tmp_path):
    """--flops-target with several entries: rows matched to the first
    (dense) entry follow the given ones, and --name names the files."""
    run_tool([
        'tools/analysis_tools/benchmark.py', CONFIG,
        '@'.join([CONFIG, *ATME]), '--labels', 'dense', 'atme',
        '--flops-target', '0.6', '--reducers', 'ToMe',
        '--shape', '64', '64', '--warmup', '0', '--repeats', '1',
        '--part', 'backbone', '--out-dir', str(tmp_path), '--name', 'table'
    ])
    result = json.load(open(tmp_path / 'table.json'))
    names = [r['name'] for r in result['results']]
    assert names[:2] == ['dense', 'atme']
    assert len(names) == 3 and names[2].startswith('ToMe @ 0.')
    assert (tmp_path / 'table.md').exists()


@pytest.mark.parametrize('part', ['model', 'network'])
def test_benchmark_whole_model(tmp_path, part):
    proc = run_tool([
        'tools/analysis_tools/benchmark.py', CONFIG, '--shape', '64', '64',
        '--warmup', '0', '--repeats', '1', '--part', part, '--out-dir',
        str(tmp_path)
    ])
    result = json.load(open(next(tmp_path.glob('*.json'))))
    assert result['results'][0]['part'] == part
    assert 'demo_tiny' in proc.stdout


@pytest.mark.parametrize('kind', ['ATME', 'ATMEAdaptive'])
def test_visualize_merge_draws_one_panel_per_block(tmp_path, demo_data,
                                                   kind):
    image = osp.join(demo_data, 'images/validation/demo_00000.jpg')
    out = tmp_path / 'merge.png'
    proc = run_tool([
        'tools/analysis_tools/visualize_merge.py', CONFIG, image, '--blocks',
        '0', '1', '3', '--out', str(out), '--cfg-options',
        *[o.replace('=ATME', f'={kind}') for o in ATME]
    ])
    # 64x64 image: 4x4 patches; each row merges round(0.5 * 2) = 1 pair,
    # then each column 1 pair (ATMEAdaptive: as many merges, anywhere)
    assert 'block 0 12 tokens, block 1 9 tokens, block 3 9 tokens' in \
        proc.stdout
    panels = cv2.imread(str(out))
    assert panels.shape == (64, 3 * 64, 3)
    # merged groups are outlined: the block-1 panel has fewer edge pixels
    edges = (panels == 255).all(-1)
    assert edges[:, :64].sum() > edges[:, 64:128].sum() > 0


def test_atme_schedule_shows_what_a_schedule_does_to_the_grid():
    proc = run_tool([
        'tools/analysis_tools/atme_schedule.py', '--arch', 'deit-t',
        '--shape', '512', '512', '--schedule', '[(3,h,0.75),(4,v,0.75)]'
    ])
    assert "schedule=[(3, 'h', 0.75), (4, 'v', 0.75)]" in proc.stdout
    fraction = float(proc.stdout.split('block FLOPs: ')[1].split()[0])
    assert fraction == pytest.approx(0.521, abs=1e-3)
    assert '3:32x32, 4:32x20, 5:20x20' in proc.stdout


def test_match_flops_caps_atme_reduction_points():
    proc = run_tool([
        'tools/analysis_tools/match_flops.py', '--arch', 'deit-s',
        '--shape', '512', '512', '--target', '0.5', '--reducers', 'ATME',
        '--max-points', '2'
    ])
    assert ("ATME: token_reducer={'type': 'ATME', 'schedule': "
            "[[3, 'h', 0.875], [4, 'v', 0.875]]}") in proc.stdout
    fraction = float(proc.stdout.split('block FLOPs ')[1].split(';')[0])
    assert 0.48 <= fraction <= 0.5


def test_match_flops_prints_every_reducer_at_the_target():
    proc = run_tool(['tools/analysis_tools/match_flops.py', '--target',
                     '0.35', '--shape', '512', '512'])
    out = proc.stdout
    for line in ("ATME: token_reducer={'type': 'ATME', 'schedule': ",
                 "ATMEAdaptive: token_reducer={'type': 'ATMEAdaptive', "
                 "'schedule': ",
                 "ToMe: token_reducer={'type': 'ToMe', 'r': 113}",
                 "TPS: token_reducer={'type': 'TPS', 'keep_ratio': ",
                 "EViT: token_reducer={'type': 'EViT', 'keep_ratio': "):
        assert line in out
    fractions = [float(line.split()[2].rstrip(';'))
                 for line in out.splitlines()
                 if line.startswith('  block FLOPs')]
    assert len(fractions) == 5
    assert all(abs(f - 0.35) <= 0.0105 for f in fractions)
    # ATMEAdaptive runs ATME's counts: the same block FLOPs
    assert fractions[0] == fractions[1]
