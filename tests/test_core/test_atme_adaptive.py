"""ATMEAdaptive: neighbour-only merges, ATME's counts, padded batches,
exact restoration, its operator budget, and its place in the backbone."""
import pytest
import torch

from cait_mm.core import (TOKEN_REDUCERS, ATMEAdaptive, AttentionInfo,
                          TokenState, build_token_reducer)
from cait_mm.core.atme import ATME
from cait_mm.core.atme_adaptive import (candidates, doubling_steps,
                                        neighbour_patches)


def _info(keys):
    k = keys[:, None]  # one head; no prefix
    return AttentionInfo(q=k, k=k, scale=1.)


def _reduce(reducer, x, keys, state):
    """Every scheduled step on patch tokens ``x``, the keys carried along
    (so that each step sees the merged keys)."""
    for block in sorted(reducer.blocks):
        both = torch.cat([x, keys], dim=-1)
        both, state = reducer(block, both, _info(keys), state, 0)
        x, keys = both.split([x.shape[-1], keys.shape[-1]], dim=-1)
    return x, state


def _groups(source, grid):
    """The sets of patches held together, per token."""
    groups = {}
    for p, t in enumerate(source.tolist()):
        groups.setdefault(t, set()).add(p)
    return groups


def _connected(cells, grid):
    H, W = grid
    start = min(cells)
    seen, stack = {start}, [start]
    while stack:
        p = stack.pop()
        i, j = divmod(p, W)
        for q, ok in ((p - 1, j > 0), (p + 1, j < W - 1), (p - W, i > 0),
                      (p + W, i < H - 1)):
            if ok and q in cells and q not in seen:
                seen.add(q)
                stack.append(q)
    return seen == cells


SCHEDULE = [(0, 'h', .6), (1, 'v', .5), (3, 'h', 1.), (4, 'v', .7)]
#: the two ways to set the counts: an ATME schedule, a steady rate
MODES = [dict(schedule=SCHEDULE), dict(ratio=0.3, blocks=(0, 1, 3, 4))]


@pytest.mark.parametrize('mode', MODES, ids=['schedule', 'ratio'])
@pytest.mark.parametrize('grid', [(9, 11), (6, 8), (2, 13)])
def test_groups_are_4_connected_and_counts_are_the_announced_ones(
        grid, mode):
    H, W = grid
    torch.manual_seed(0)
    reducer = ATMEAdaptive(6, **mode)
    # smooth keys: merges form large groups, chains included
    base = torch.randn(3, 1, 6, dtype=torch.float64)
    ramp = torch.linspace(0, 1, H * W, dtype=torch.float64)[None, :, None]
    keys = base + ramp * torch.randn(3, 1, 6, dtype=torch.float64) \
        + 0.05 * torch.randn(3, H * W, 6, dtype=torch.float64)
    values = torch.randn(3, H * W, 4, dtype=torch.float64)
    state = TokenState.from_grid(grid)
    counts = []
    x = values
    for block in range(6):
        if block in reducer.blocks:
            both = torch.cat([x, keys], dim=-1)
            both, state = reducer(block, both, _info(keys), state, 0)
            x, keys = both.split([4, 6], dim=-1)
        counts.append(x.shape[1])
    assert counts == reducer.token_counts(grid)
    if 'schedule' in mode:
        assert counts == ATME(6, schedule=SCHEDULE).token_counts(grid)
    else:  # ToMe's rounding; ToMe stops at half the tokens, this does not
        n = H * W
        for block in range(6):
            n -= int(0.3 * n + 0.5) if block in (0, 1, 3, 4) else 0
            assert counts[block] == n
    restored = state.restore(x)
    for b in range(3):
        groups = _groups(state.source[b], grid)
        assert sorted(groups) == list(range(counts[-1]))
        for token, cells in groups.items():
            assert _connected(cells, grid), (b, token, sorted(cells))
            members = sorted(cells)
            # size-weighted merges: a token is the mean of its patches
            torch.testing.assert_close(
                restored[b, members],
                values[b, members].mean(0).expand(len(members), -1))
            assert state.size[b, token] == len(cells)
    assert max(len(c) for c in _groups(state.source[0], grid).values()) > 4


def test_identical_neighbours_merge_first():
    """Exactly identical neighbour pairs, anywhere in the image (not a quota
    per line: three of them share row 0), are the merges chosen."""
    H, W, C = 6, 8, 5
    torch.manual_seed(1)
    x = torch.randn(2, H * W, C)
    pairs = [(0, 1), (2, 3), (9, 10), (4, 12), (6, 14), (17, 25)]
    for a, b in pairs:
        x[:, b] = x[:, a]
    # ATME's count for one 'h' step of a quarter of the pairs: 6 merges
    reducer = ATMEAdaptive(1, schedule=[(0, 'h', .25)])
    merged, state = _reduce(reducer, x, x.clone(), TokenState.from_grid(
        (H, W)))
    assert merged.shape[1] == H * W - len(pairs)
    for b in range(2):
        held = sorted(tuple(sorted(c)) for c in _groups(
            state.source[b], (H, W)).values() if len(c) > 1)
        assert held == sorted(pairs)
    assert torch.equal(state.restore(merged), x)


def test_restore_is_exact_on_constant_inputs():
    x = torch.full((2, 7 * 9, 6), 0.1)
    x[1] = -3.7
    reducer = ATMEAdaptive(4, schedule=[(0, 'h', .875), (1, 'v', .875)])
    merged, state = _reduce(reducer, x, x.clone(), TokenState.from_grid(
        (7, 9)))
    assert merged.shape[1] == reducer.token_counts((7, 9))[-1] < 7 * 9 // 3
    assert torch.equal(state.restore(merged), x)
    assert state.size.sum(1).tolist() == [63., 63.]


@pytest.mark.parametrize('layers, mode', [
    (3, dict(schedule=[(0, 'h', .5), (1, 'v', .75), (2, 'h', .5)])),
    (3, dict(ratio=0.4)),
    # both images end with one token: the padded one's padding then lands
    # on its content token, which must not grow
    (10, dict(ratio=0.4))], ids=['schedule', 'ratio', 'ratio-to-one'])
def test_padded_image_merges_like_the_image_alone(layers, mode):
    """An image of 5x7 content batched, padded to 6x13, with a full one:
    it merges its own count, its content tokens come first and equal the
    tokens it gets alone (sizes included), and its patches map alike."""
    torch.manual_seed(5)
    reducer = ATMEAdaptive(layers, **mode)
    x = torch.randn(1, 5, 7, 3)
    keys = torch.randn(1, 5, 7, 4)
    alone, alone_state = _reduce(reducer, x.flatten(1, 2),
                                 keys.flatten(1, 2),
                                 TokenState.from_grid((5, 7)))

    def pad(t):
        wide = torch.cat([t, torch.randn(1, 5, 6, t.shape[-1])], 2)
        tall = torch.cat([wide, torch.randn(1, 1, 13, t.shape[-1])], 1)
        return torch.cat([tall, torch.randn(1, 6, 13, t.shape[-1])])

    padded_x, padded_keys = pad(x).flatten(1, 2), pad(keys).flatten(1, 2)
    state = TokenState.from_grid((6, 13), valid_shape=[(5, 7), (6, 13)])
    out, state = _reduce(reducer, padded_x, padded_keys, state)
    n = alone.shape[1]
    assert n == reducer.token_counts((5, 7))[-1]
    assert out.shape[1] == reducer.token_counts((6, 13))[-1]
    assert [h * w for h, w in state.valid_shape] == [
        n, reducer.token_counts((6, 13))[-1]]
    torch.testing.assert_close(out[0, :n], alone[0])
    assert torch.equal(state.size[0, :n], alone_state.size[0])
    assert state.size[0, :n].sum() == 35
    content = state.source[0].view(6, 13)[:5, :7].reshape(-1)
    assert torch.equal(content, alone_state.source[0])
    assert state.padding_mask()[0].tolist() == [False] * n + [True] * (
        out.shape[1] - n)
    # the full image of the batch merges as it does alone
    full, _ = _reduce(reducer, padded_x[1:], padded_keys[1:],
                      TokenState.from_grid((6, 13)))
    torch.testing.assert_close(out[1], full[0])


def test_candidates_are_the_left_and_upper_neighbours_of_the_anchor():
    table = neighbour_patches((2, 3), torch.device('cpu'))
    assert table.tolist() == [[0, 0], [0, 1], [1, 2], [3, 0], [3, 1],
                              [4, 2]]
    # tokens: {0, 1, 3}, {2}, {4, 5}; anchors 0, 2, 4
    source = torch.tensor([[0, 0, 1, 0, 2, 2]])
    cand = candidates(source, (2, 3), 1, 3, torch.device('cpu'))
    assert cand.tolist() == [[[0, 0], [0, 1], [0, 0]]]
    assert [doubling_steps(r) for r in (0, 1, 2, 3, 4, 5)] == \
        [0, 0, 1, 2, 2, 3]


def test_settings_for_flops_are_atmes_and_it_rebuilds_from_its_config():
    cfg = ATMEAdaptive.for_flops(0.5, (32, 32), 12, 384)
    assert cfg['type'] == 'ATMEAdaptive'
    assert cfg['schedule'] == ATME.for_flops(0.5, (32, 32), 12,
                                             384)['schedule']
    reducer = build_token_reducer(cfg, 12, 384)
    assert reducer.flops_fraction((32, 32)) <= 0.5
    assert abs(reducer.flops_fraction((32, 32)) - 0.5) <= 0.015
    assert build_token_reducer(reducer.config(), 12).settings() == \
        reducer.settings()
    assert 'ATMEAdaptive' in TOKEN_REDUCERS
    two = ATMEAdaptive.for_flops(0.35, (32, 32), 12, 384, max_points=2)
    assert len(two['schedule']) <= 2


def test_a_steady_rate_meets_a_budget_with_tomes_counts():
    """``knob='ratio'``: ToMe's rate and counts at equal FLOPs (below
    half of the tokens per step, where ToMe's cap does not bind)."""
    from cait_mm.core.tome import ToMe
    for target in (0.52, 0.35):
        cfg = ATMEAdaptive.for_flops(target, (32, 32), 12, 192,
                                     knob='ratio')
        tome = ToMe.for_flops(target, (32, 32), 12, 192, knob='ratio')
        assert cfg == dict(type='ATMEAdaptive', ratio=tome['ratio'])
        reducer = build_token_reducer(cfg, 12, 192)
        assert reducer.token_counts((32, 32)) == build_token_reducer(
            tome, 12, 192).token_counts((32, 32))
        assert abs(reducer.flops_fraction((32, 32)) - target) < 0.005
        again = build_token_reducer(reducer.config(), 12)
        assert again.settings() == dict(ratio=cfg['ratio'],
                                        blocks=list(range(12)))
    assert 'ratio=0.5, blocks=[2, 5]' in repr(ATMEAdaptive(
        12, ratio=0.5, blocks=(5, 2)))


@pytest.mark.parametrize('kwargs, message', [
    (dict(schedule='deit-t', ratio=0.1), 'schedule or ratio, not both'),
    (dict(ratio=1.0), 'outside'),
    (dict(ratio=0.2, blocks=(3, 3)), 'distinct'),
    (dict(ratio=0.2, blocks=(12, )), 'distinct'),
    (dict(blocks=(1, 2)), 'blocks go with ratio'),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ATMEAdaptive(12, **kwargs)
    with pytest.raises(ValueError, match='max_points caps a schedule'):
        ATMEAdaptive.for_flops(0.5, (8, 8), 12, 32, knob='ratio',
                               max_points=2)


def _vit(reducer, size=64):
    from cait_mm.models import CAITViT
    torch.manual_seed(0)
    model = CAITViT(
        arch=dict(embed_dims=32, num_layers=12, num_heads=2, mlp_ratio=2.),
        img_size=size, out_indices=(2, 5, 11), token_reducer=reducer).eval()
    model.init_weights()
    return model


@pytest.mark.parametrize('mode', [dict(schedule='deit-s-few'),
                                  dict(ratio=0.25)],
                         ids=['schedule', 'ratio'])
def test_caitvit_forward_batch_padding_and_counts(mode):
    model = _vit(dict(type='ATMEAdaptive', **mode))
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        batch = model(x)
        alone = [model(x[i:i + 1]) for i in range(3)]
        tokens, state = model.embed(x)
        counts = [t.shape[1] - 1 for _, t, _ in model.run_blocks(tokens,
                                                                 state)]
        # image 1 holds 48x64 of content, padded to the batch's 64x96
        padded = model(x, valid_sizes=[(64, 96), (48, 64), (64, 96)])
        small = model(x[1:2, :, :48, :64])
    assert counts == model.token_reducer.token_counts((4, 6))
    assert counts[-1] < 24
    assert [o.shape for o in batch] == [(3, 32, 4, 6)] * 3
    for i in range(3):
        for b, a in zip(batch, alone[i]):
            torch.testing.assert_close(b[i:i + 1], a, rtol=1e-4, atol=1e-5)
    for p, a in zip(padded, small):
        torch.testing.assert_close(p[1:2, :, :3, :4], a, rtol=1e-4,
                                   atol=1e-5)
        assert not p[1, :, 3:].any() and not p[1, :, :, 4:].any()
    for p, b in zip(padded, batch):
        torch.testing.assert_close(p[::2], b[::2], rtol=1e-4, atol=1e-5)


def test_a_tiny_upernet_runs_with_it_as_a_config_override():
    import os.path as osp

    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from ..conftest import REPO
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/demo/upernet_deit_t_demo_shapes.py'))
    cfg.merge_from_dict({'model.backbone.token_reducer': dict(
        type='ATMEAdaptive', schedule='deit-t')})
    init_default_scope(cfg.default_scope)
    cfg.model.pretrained = None
    model = MODELS.build(cfg.model).eval()
    assert type(model.backbone.token_reducer).__name__ == 'ATMEAdaptive'
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 96), mode='tensor')
        feats = model.backbone(torch.randn(2, 3, 64, 96))
    assert logits.shape == (2, cfg.model.decode_head.num_classes, 4, 6)
    assert torch.isfinite(logits).all()
    assert all(f.shape[-2:] == (4, 6) for f in feats)


# the budget: a merge within 1.2x of an ATME merge's operators
BUDGET_VS_ATME = 1.2
# what a merge takes today (top-level ops, kernels; 224x224, r = 42 to
# 98): the pointer doubling (ceil(log2 r) gathers), the anchor, candidate
# and size lookups ATME's strided pairs do without; a regression guard
MERGE_OPS = (73, 60)


def _merge_ops(reducer):
    from .test_op_budgets import _model, _steps
    counts, _, _ = _steps(_model(reducer), torch.randn(2, 3, 224, 224))
    return counts


def test_a_merge_stays_within_todays_operator_counts():
    counts = _merge_ops(dict(type='ATMEAdaptive', schedule='deit-s'))
    assert len(counts) == 6
    for ops in counts:
        assert ops.top_level <= MERGE_OPS[0], ops.by_name
        assert ops.kernels <= MERGE_OPS[1], ops.kernels_by_name
        # the tokens move once (prefix included), merge in one add
        assert ops.by_name['aten::index_select'] == 4
        assert ops.by_name['aten::index_add_'] == 1
        assert 'aten::matmul' not in ops.by_name
        assert 'aten::nonzero' not in ops.by_name


@pytest.mark.xfail(strict=True, reason='issue #28: an ATMEAdaptive merge '
                   'takes 1.7-1.9x the top-level ops and 2.5-2.7x the '
                   'kernels of an ATME merge (pointer doubling, candidate '
                   'and size lookups)')
def test_a_merge_is_within_1_2x_of_an_atme_merge():
    atme = _merge_ops(dict(type='ATME', schedule='deit-s'))
    ours = _merge_ops(dict(type='ATMEAdaptive', schedule='deit-s'))
    for a, o in zip(atme, ours):
        assert o.top_level <= BUDGET_VS_ATME * a.top_level
        assert o.kernels <= BUDGET_VS_ATME * a.kernels


def test_flops_counted_by_tracing_are_atmes():
    """The FLOPs count traces the model (shapes become tensors there): the
    counts stay host ints, and the blocks cost what ATME's do."""
    from cait_mm.analysis.complexity import count_flops
    from cait_mm.models import CAITViT
    flops = {}
    for kind in ('ATME', 'ATMEAdaptive'):
        model = CAITViT(arch=dict(embed_dims=32, num_layers=12, num_heads=2,
                                  mlp_ratio=2.), out_indices=(11, ),
                        token_reducer=dict(type=kind,
                                           schedule='deit-s')).eval()
        flops[kind], _ = count_flops(model, (torch.randn(1, 3, 224, 224), ))
    assert abs(flops['ATMEAdaptive'] - flops['ATME']) <= 0.01 * flops['ATME']
