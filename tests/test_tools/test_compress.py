"""tools/compress.py: the dense model and every reducer at a FLOPs budget,
evaluated training-free on the config's validation set (the demo data),
and the chosen model written so that tools/test.py scores it again."""
import json
import os.path as osp
from dataclasses import asdict

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from cait_mm.analysis.compress import REDUCERS, Row, choose, compress
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
    # a progress bar per row, on stderr
    for name in ('dense', *REDUCERS):
        assert f'evaluating {name}\n' in proc.stderr

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


def _row(name, flops, miou, speedup=None, budget=None):
    return Row(name, None if name == 'dense' else {'type': name}, flops,
               {'mIoU': miou}, speedup=speedup,
               budget=flops if budget is None else budget)


def test_choose_the_most_accurate_row_at_the_tightest_budget():
    rows = [_row('dense', 1., 50.), _row('ATME 0.6', 0.58, 49., budget=0.6),
            _row('ToMe 0.6', 0.6, 49.5, budget=0.6),
            _row('ATME 0.4', 0.39, 45., budget=0.4),
            _row('ToMe 0.4', 0.4, 46., budget=0.4)]
    assert choose(rows, 'mIoU').name == 'ToMe 0.4'
    # 97% of 50 is 48.5: only the 0.6 rows keep it; the fewer FLOPs win
    assert choose(rows, 'mIoU', min_accuracy=97).name == 'ATME 0.6'
    assert choose(rows, 'mIoU', min_accuracy=90).name == 'ATME 0.4'
    with pytest.raises(ValueError, match=r'No row keeps 99.5% .* ToMe 0.6 '
                       r'with 99.0%'):
        choose(rows, 'mIoU', min_accuracy=99.5)


def test_tome_and_atme_adaptive_take_their_steady_rate():
    """ToMe and ATMEAdaptive are set by a ratio, the same for both at a
    budget (ToMe's counts); ATME by a schedule."""
    from cait_mm.analysis.compress import reducer_for_flops
    from cait_mm.core.spec import ARCHS
    arch = ARCHS['deit-t']
    for budget in (0.52, 0.35):
        tome = reducer_for_flops('ToMe', budget, (32, 32), arch)
        mine = reducer_for_flops('ATMEAdaptive', budget, (32, 32), arch)
        assert mine == dict(type='ATMEAdaptive', ratio=tome['ratio'])
        assert 'schedule' in reducer_for_flops('ATME', budget, (32, 32),
                                               arch)


def test_choose_breaks_a_flops_tie_by_speed():
    rows = [_row('dense', 1., 50.), _row('A', 0.5, 49., speedup=1.2),
            _row('B', 0.5, 49.5, speedup=1.4)]
    assert choose(rows, 'mIoU', min_accuracy=95).name == 'B'


def test_several_budgets_one_dense_row_and_the_plot(
        dense, demo_data, tmp_path, monkeypatch):
    from cait_mm.analysis import benchmark
    timed = {}
    real = benchmark.benchmark

    def recording(*args, **kwargs):
        timed.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(benchmark, 'benchmark', recording)
    # compiled options reach the benchmark (compiled rows against compiled
    # rows); 'eager' compiles nothing, so this stays fast
    options = dict(backend='eager', dynamic=False)
    result = compress(CONFIG, dense, [0.6, 0.45], str(tmp_path),
                      reducers=['ATME', 'ToMe'],
                      options=_data_options(demo_data), repeats=1,
                      min_accuracy=1, compile=options, log=lambda _: None)
    assert timed['compile'] == options and result['compiled']
    names = [row['name'] for row in result['rows']]
    assert names[0] == 'dense' and names.count('dense') == 1
    assert result['flops'] == [0.6, 0.45]
    for row in result['rows'][1:]:
        assert row['name'] == f'{row["reducer"]["type"]} {row["budget"]:g}'
        assert row['flops'] <= row['budget'] * 1.03
    assert {'ATME 0.6', 'ToMe 0.6'} <= set(names)
    assert set(names[1:]) | set(result['unreached']) == {
        'ATME 0.6', 'ToMe 0.6', 'ATME 0.45', 'ToMe 0.45'}
    # 1% of dense is kept by every row: the fewest block FLOPs win
    reducer_rows = result['rows'][1:]
    assert result['chosen'] == min(
        reducer_rows, key=lambda r: (r['flops'], -r['speedup'],
                                     -r['metrics']['mIoU']))['name']
    png = tmp_path / 'compress.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_mask_rcnn_rows_only_reducers_that_support_padded_batches(
        demo_data, tmp_path):
    """mmdet pads a batch to its largest image: ToMe, EViT and TPS are left
    out, named; the subset's own annotations are what is scored."""
    from mmdet.registry import MODELS
    config = osp.join(REPO, 'tests/data/configs/mask_rcnn_demo_tiny.py')
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(config).model)
    model.init_weights()
    dense = tmp_path / 'dense.pth'
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, dense)
    ann = f'{demo_data}/annotations/instances_validation.json'
    options = dict(_data_options(demo_data), **{
        'val_evaluator.ann_file': ann})
    result = compress(config, str(dense), 0.6, str(tmp_path / 'work'),
                      options=options, max_samples=2, repeats=1,
                      log=lambda _: None)
    assert result['metric'] == 'coco/segm_mAP'
    rows = {row['name']: row for row in result['rows']}
    assert list(rows) == ['dense', 'ATME', 'ATMEAdaptive']
    assert 'coco/bbox_mAP' in rows['ATME']['metrics']
    for name in ('ToMe', 'EViT', 'TPS'):
        assert 'padded batches' in result['unreached'][name]
    table = (tmp_path / 'work' / 'compress.md').read_text()
    assert 'ToMe is left out: the model feeds its backbone padded' in table
    subset = json.loads(
        (tmp_path / 'work' / 'annotations_first_2.json').read_text())
    assert len(subset['images']) == 2
    assert {a['image_id'] for a in subset['annotations']} <= {
        im['id'] for im in subset['images']}


def test_finetune_trains_the_chosen_row_and_records_it(
        dense, demo_data, tmp_path):
    """--finetune: the chosen row trained from the checkpoint with
    tools/train.py on OUT/finetune.py, scored as the other rows, written as
    OUT/finetuned.pth that tools/test.py scores again."""
    work, out = tmp_path / 'work', tmp_path / 'out'
    options = [f'{k}={v}' for k, v in _data_options(demo_data).items()]
    proc = run_tool(['tools/compress.py', CONFIG, dense, '--flops', '0.6',
                     '--reducers', 'ATME', 'ToMe', '--repeats', '0',
                     '--max-samples', '2', '--work-dir', str(work),
                     '--out', str(out), '--finetune', '3',
                     '--cfg-options', *options])
    ft = Config.fromfile(str(out / 'finetune.py'))
    base_lr = Config.fromfile(CONFIG).optim_wrapper.optimizer.lr
    # the recipe: a tenth of the config's rate, warm-up then poly decay
    assert ft.optim_wrapper.optimizer.lr == pytest.approx(base_lr * 0.1)
    assert ft.train_cfg.max_iters == 3
    assert [s['type'] for s in ft.param_scheduler] == ['LinearLR', 'PolyLR']
    assert ft.param_scheduler[-1]['end'] == 3
    assert ft.load_from == str(out / 'model.pth')
    assert ft.model.backbone.token_reducer == Config.fromfile(
        str(out / 'config.py')).model.backbone.token_reducer
    assert (work / 'finetune' / 'iter_3.pth').is_file()

    result = json.loads((work / 'compress.json').read_text())
    entry = result['finetuned']
    assert entry['iters'] == 3 and entry['lr'] == pytest.approx(base_lr * 0.1)
    miou = entry['metrics']['mIoU']
    assert f'{result["chosen"]} fine-tuned (3 iterations' in (
        work / 'compress.md').read_text()
    assert 'fine-tuned (3 iterations' in proc.stdout
    # training changed the weights the training-free model holds
    before = torch.load(out / 'model.pth', weights_only=True)
    after = torch.load(out / 'finetuned.pth', weights_only=True)
    assert before['state_dict'].keys() == after['state_dict'].keys()
    assert any(not torch.equal(before['state_dict'][k], v)
               for k, v in after['state_dict'].items())
    assert json.loads(after['meta']['cait_mm_compress']['finetuned'])[
        'iters'] == 3

    # scored again by tools/test.py, on the same 2 images
    proc = run_tool(['tools/test.py', str(out / 'config.py'),
                     str(out / 'finetuned.pth'), '--work-dir',
                     str(tmp_path / 'test'), '--cfg-options',
                     'test_dataloader.dataset.indices=2'])
    assert f'mIoU: {miou:.4f}' in proc.stdout + proc.stderr


def test_finetune_bad_input(dense, tmp_path):
    for args, message in (
            (['--finetune', '0'], 'at least one iteration'),
            (['--finetune', '5', '--finetune-lr', '-1'], 'must be positive'),
            (['--finetune-lr', '1e-4'], 'goes with --finetune')):
        proc = run_tool(['tools/compress.py', CONFIG, dense, '--flops',
                         '0.6', '--work-dir', str(tmp_path), *args],
                        check=False)
        assert proc.returncode == 2 and message in proc.stderr
        assert not (tmp_path / 'dense').exists()


@pytest.mark.parametrize('tuned, better', [(49.5, True), (48.0, False)])
def test_a_fine_tuned_row_below_its_training_free_one_is_named(
        tmp_path, monkeypatch, tuned, better):
    """Fine-tuning a row that already keeps nearly all of dense can lose a
    little: the table says so and which file stays the better model."""
    from cait_mm.analysis import compress as module
    (tmp_path / 'finetune.py').write_text(
        'optim_wrapper = dict(optimizer=dict(lr=3e-4))\n')
    (tmp_path / 'compress.md').write_text('| table |\n')
    monkeypatch.setattr(module, 'evaluate',
                        lambda *args, **kwargs: {'mIoU': tuned})
    written = []
    monkeypatch.setattr(module, 'write_state',
                        lambda *args: written.append(args))
    result = dict(metric='mIoU', chosen='ToMe', config='c', checkpoint='k',
                  flops=[0.5], max_samples=None, min_accuracy=None,
                  rows=[asdict(_row('dense', 1., 50.)),
                        asdict(_row('ToMe', 0.5, 49.))])
    lines = []
    entry = module.record_finetuned(result, str(tmp_path), str(tmp_path),
                                    'ft.pth', 200, log=lines.append)
    assert entry['share'] == pytest.approx(100 * tuned / 50, abs=0.01)
    assert entry['lr'] == pytest.approx(3e-4)
    table = (tmp_path / 'compress.md').read_text()
    assert table.startswith('| table |\n') and lines[0] in table
    assert ('stays the better model' in lines[0]) is not better
    assert written[0][0] == 'ft.pth'
    assert written[0][2] == str(tmp_path / 'finetuned.pth')
