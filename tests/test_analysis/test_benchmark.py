"""cait_mm.analysis.benchmark on Mask R-CNN configs (the seg ones go
through tools/analysis_tools/benchmark.py in
tests/test_tools/test_analysis_tools.py)."""
import os.path as osp

import pytest
import torch

from cait_mm.analysis.benchmark import Entry, benchmark, part_fn
from cait_mm.analysis.model_from_config import build_model

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'tests/data/configs/mask_rcnn_demo_tiny.py')
# training-free ATME on the dense config: dotted keys create the reducer
MERGE = {
    'model.backbone.token_reducer.type': 'ATME',
    'model.backbone.token_reducer.schedule': [(0, 'h', .5), (1, 'v', .5)]
}


def test_whole_mask_rcnn_is_run_with_detection_samples():
    from mmdet.structures import DetDataSample
    model = build_model(CONFIG)
    run, counted = part_fn(model, 'model', 1, (64, 96))
    with torch.no_grad():
        (result, ) = run(torch.randn(1, 3, 64, 96))
    assert isinstance(result, DetDataSample)
    assert result.pred_instances.masks.shape[-2:] == (64, 96)


@pytest.mark.parametrize('part', ['features', 'network', 'model'])
def test_mask_rcnn_with_and_without_token_merging(part):
    results = benchmark([Entry(CONFIG), Entry(CONFIG, MERGE)], (64, 96),
                        part=part,
                        warmup=0,
                        repeats=1,
                        log=lambda _: None)
    dense, merged = results
    assert dense.flops > 0 and merged.flops < dense.flops
    assert merged.params == dense.params
    assert all(r.images_per_s > 0 for r in results)
    # merging is bookkeeping: more dispatched operators for fewer FLOPs
    assert 0 < dense.kernels < dense.ops < merged.ops


def test_network_part_is_predict_without_resizing_and_post_processing():
    import torch.nn.functional as F
    model = build_model(osp.join(REPO, 'tests/data/configs/demo_tiny.py'))
    x = torch.randn(2, 3, 64, 96)
    network, _ = part_fn(model, 'network', 2, (64, 96))
    predict, _ = part_fn(model, 'model', 2, (64, 96))
    with torch.no_grad():
        logits = network(x)
        samples = predict(x)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape[:2] == (2, model.decode_head.num_classes)
    assert logits.shape[-2:] != (64, 96)
    resized = F.interpolate(logits, (64, 96), mode='bilinear',
                            align_corners=model.align_corners)
    for i, sample in enumerate(samples):
        torch.testing.assert_close(sample.seg_logits.data, resized[i])


def test_matched_entries_set_each_reducer_for_the_flops_target():
    from cait_mm.analysis.benchmark import matched_entries
    from cait_mm.core import build_token_reducer
    config = osp.join(REPO, 'configs/upernet/upernet_cait_s_ade20k.py')
    entries = matched_entries(config, (224, 224), 0.5,
                              ['ATME', 'ATMEAdaptive', 'TPS', 'ToMe',
                               'EViT'])
    assert [e.name.split(' ')[0] for e in entries] == [
        'dense', 'ATME', 'ATMEAdaptive', 'TPS', 'ToMe', 'EViT']
    assert entries[0].overrides == {}
    for entry in entries[1:]:
        cfg = dict(entry.overrides['model.backbone.token_reducer'])
        # the config's own reducer (ATME here) is replaced, not merged into
        assert cfg.pop('_delete_') is True
        fraction = build_token_reducer(cfg, 12, 384).flops_fraction((14, 14))
        assert abs(fraction - 0.5) <= 0.015
        assert f'{fraction:.3f}' in entry.name
    for base in (config, config.replace('cait_s', 'deit_s')):
        tome = matched_entries(base, (224, 224), 0.5, ['ToMe'])[1]
        model = build_model(base, tome.overrides)
        assert model.backbone.token_reducer.config() == dict(
            type='ToMe', r=16, blocks=list(range(12)))
    with pytest.raises(ValueError, match='Unknown token reducer "X"'):
        matched_entries(config, (224, 224), 0.5, ['X'])


def test_compiled_rows_compare_compiled_with_compiled():
    """Every row's backbone and neck go through torch.compile, after the
    eager operator count; the first warm-up call compiles."""
    from torch._dynamo.testing import CompileCounter
    counter = CompileCounter()
    torch._dynamo.reset()
    results = benchmark([Entry(CONFIG), Entry(CONFIG, MERGE)], (64, 96),
                        part='features', warmup=1, repeats=1,
                        compile=dict(backend=counter, dynamic=False),
                        log=lambda _: None)
    # both backbones; the necks are alike, so the second reuses the graph
    assert counter.frame_count == 3
    dense, merged = results
    assert 0 < dense.ops < merged.ops and merged.images_per_s > 0
    with pytest.raises(ValueError, match='warmup'):
        benchmark([Entry(CONFIG)], (64, 96), warmup=0,
                  compile=dict(backend=counter))
    with pytest.raises(ValueError, match='at least one timed call'):
        benchmark([Entry(CONFIG)], (64, 96), repeats=0)


def test_whole_model_rows_report_flops_and_params_by_part():
    seg = osp.join(REPO, 'tests/data/configs/demo_tiny.py')
    slim = {'model.decode_head.channel_widths': dict(
        ppm=0.5, lateral=0.5, fpn=0.5, fuse=0.5)}
    dense, half = benchmark([Entry(seg), Entry(seg, slim)], (64, 64),
                            part='network', warmup=0, repeats=1,
                            log=lambda _: None)
    assert set(dense.parts) == {'backbone', 'decode_head', 'auxiliary_head'}
    # the parts' FLOPs add up to nearly the whole (the segmentor's own
    # operators are outside every part)
    assert 0.99 * dense.flops < sum(f for f, _ in dense.parts.values()) \
        <= dense.flops
    assert sum(p for _, p in dense.parts.values()) == dense.params
    assert dense.parts['auxiliary_head'][0] == 0  # used only in training
    assert half.parts['backbone'] == dense.parts['backbone']
    flops, params = half.parts['decode_head']
    # a 1x1 or 3x3 conv between two halved widths costs a quarter
    assert flops < 0.4 * dense.parts['decode_head'][0]
    assert params < 0.4 * dense.parts['decode_head'][1]
    from cait_mm.analysis.benchmark import to_markdown
    table = to_markdown([dense, half], 'demo')
    assert '| model | backbone | decode_head | auxiliary_head |' in table


def test_cudnn_autotuning_follows_the_configs_runtime():
    """tools/test.py's Runner applies env_cfg.cudnn_benchmark (off in
    mmdet's runtime, on in mmseg's); the rows run with it and it is
    restored after."""
    from cait_mm.analysis import benchmark as bench
    on = {'env_cfg.cudnn_benchmark': True}
    seg = osp.join(REPO, 'configs/upernet/upernet_deit_s_ade20k.py')
    assert not bench.runtime_cudnn_benchmark([Entry(CONFIG),
                                              Entry(CONFIG, MERGE)])
    assert bench.runtime_cudnn_benchmark([Entry(CONFIG, on), Entry(seg)])
    with pytest.raises(ValueError, match='disagree on env_cfg.cudnn_bench'):
        bench.runtime_cudnn_benchmark([Entry(CONFIG), Entry(CONFIG, on)])
    seen = []
    count_ops = bench.count_ops

    def spy(fn):
        seen.append(torch.backends.cudnn.benchmark)
        return count_ops(fn)

    before = torch.backends.cudnn.benchmark
    bench.count_ops = spy
    try:
        benchmark([Entry(CONFIG)], (64, 96), part='features', warmup=0,
                  repeats=1, log=lambda _: None,
                  cudnn_benchmark=not before)
    finally:
        bench.count_ops = count_ops
    assert seen == [not before]
    assert torch.backends.cudnn.benchmark == before
