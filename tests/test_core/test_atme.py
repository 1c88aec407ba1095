import pytest
import torch

from cait_mm.core import Attention, AttentionInfo, TokenState
from cait_mm.core.atme import ATME
from cait_mm.core.atme_schedules import (PRESETS, grid_shapes, parse_schedule,
                                         schedule_flops, schedule_for_flops)


def _info(keys):
    """AttentionInfo with keys ``(B, N, D)`` as one head, no prefix."""
    k = keys[:, None]
    return AttentionInfo(q=k, k=k, scale=1.)


def _reduce(atme, x, keys, state):
    """Apply every scheduled step of ``atme`` to patch tokens ``x``."""
    for block in sorted(atme.blocks):
        x_keys = torch.cat([x, keys], dim=-1)
        x_keys, state = atme(block, x_keys, _info(keys), state, 0)
        x, keys = x_keys.split([x.shape[-1], keys.shape[-1]], dim=-1)
    return x, state


def _pairwise_identical(B, H, W, C, seed=0):
    """Tokens whose horizontal pairs (2j, 2j+1) are identical."""
    g = torch.Generator().manual_seed(seed)
    half = torch.randn(B, H, (W + 1) // 2, C, generator=g)
    return half.repeat_interleave(2, dim=2)[:, :, :W].reshape(B, H * W, C)


def test_merging_identical_tokens_then_restoring_is_exact():
    x = _pairwise_identical(2, 6, 8, 5)
    atme = ATME(4, schedule=[(0, 'h', 1.0)])
    state = TokenState.from_grid((6, 8))
    merged, state = _reduce(atme, x, x.clone(), state)
    assert merged.shape == (2, 6 * 4, 5) and state.shape == (6, 4)
    assert torch.equal(state.restore(merged), x)
    assert torch.equal(state.size, torch.full((2, 24), 2.))


def test_restore_maps_each_position_to_the_token_that_absorbed_it():
    """Merges are size-weighted averages, so a token that absorbed original
    positions S holds the mean of their initial values, whatever the merge
    order; restore must hand each position exactly that token."""
    B, H, W = 3, 9, 11
    torch.manual_seed(0)
    values = torch.randn(B, H * W, 4, dtype=torch.float64)
    keys = torch.randn(B, H * W, 6, dtype=torch.float64)
    atme = ATME(6, schedule=[(0, 'h', .6), (1, 'v', .5), (3, 'h', 1.),
                             (4, 'v', .7)])
    state = TokenState.from_grid((H, W))
    merged, state = _reduce(atme, values, keys, state)
    restored = state.restore(merged)
    for b in range(B):
        source = state.source[b]
        for token in source.unique():
            members = source == token
            expected = values[b, members].mean(0)
            torch.testing.assert_close(restored[b, members],
                                       expected.expand(int(members.sum()), 4))
            assert state.size[b, token] == members.sum()


@pytest.mark.parametrize('granularity', ['token', 'line'])
@pytest.mark.parametrize('grid', [(14, 14), (32, 32), (32, 64), (50, 84),
                                  (7, 9)])
def test_every_line_loses_exactly_r(grid, granularity):
    schedule = [(0, 'h', .5), (1, 'v', .5), (2, 'h', 1.), (3, 'v', .3)]
    atme = ATME(4, schedule=schedule, granularity=granularity)
    B, C = 2, 3
    torch.manual_seed(1)
    x = torch.randn(B, grid[0] * grid[1], C)
    state = TokenState.from_grid(grid)
    expected = grid_shapes(schedule, grid, 4)
    for block in range(4):
        assert state.shape == expected[block]
        x, state = atme(block, x, _info(torch.randn(B, x.shape[1], 4)),
                        state, 0)
        assert x.shape == (B, state.shape[0] * state.shape[1], C)
    assert state.shape == expected[4]
    # a full-ratio merge halves a line, keeping an odd length's last token
    assert expected[3][1] == (expected[2][1] + 1) // 2
    # sizes still add up to the original patch count in every image
    torch.testing.assert_close(state.size.sum(1),
                               torch.full((B, ), grid[0] * grid[1] * 1.))


def test_pairs_are_adjacent_and_one_way():
    # one row: pairs (0,1) (2,3) (4,5), token 6 unpaired
    keys = torch.tensor([[[1., 0], [1, .1], [1, 0], [0, 1], [0, 1], [0, 1],
                          [0, 1]]])
    x = torch.arange(7.).view(1, 7, 1)
    atme = ATME(1, schedule=[(0, 'h', 2 / 3)])  # 2 of 3 pairs
    out, state = atme(0, x, _info(keys), TokenState.from_grid((1, 7)), 0)
    # (2,3) is the least similar pair and survives; 6 has no partner
    assert out.flatten().tolist() == [0.5, 2., 3., 4.5, 6.]
    assert state.source.tolist() == [[0, 0, 1, 2, 3, 3, 4]]


def test_line_granularity_keeps_a_separable_grid():
    torch.manual_seed(2)
    atme = ATME(2, schedule=[(0, 'h', .5), (1, 'v', .5)], granularity='line')
    x = torch.randn(2, 8 * 10, 3)
    state = TokenState.from_grid((8, 10))
    _, state = _reduce(atme, x, torch.randn(2, 80, 5), state)
    source = state.source.view(2, 8, 10)
    H, W = state.shape
    rows, cols = source // W, source % W
    # the new column of an original column is the same in every row, and
    # the new row of an original row the same in every column
    assert (cols == cols[:, :1]).all() and (rows == rows[:, :, :1]).all()


def test_proportional_attention_counts_a_merged_duplicate_twice():
    torch.manual_seed(3)
    attn = Attention(16, 2).eval()
    a, b, c = torch.randn(3, 1, 1, 16)
    with_duplicate = torch.cat([a, b, b, c], dim=1)
    merged = torch.cat([a, b, c], dim=1)
    state = TokenState(grid_size=(1, 4), shape=(1, 3),
                       size=torch.tensor([[1., 2., 1.]]))
    with torch.no_grad():
        ref, _ = attn(with_duplicate)
        out, _ = attn(merged, state.attn_bias(num_prefix_tokens=0))
    torch.testing.assert_close(out, ref[:, [0, 1, 3]], rtol=0, atol=1e-6)


def test_batch_equals_single_images():
    torch.manual_seed(4)
    atme = ATME(3, schedule=[(0, 'h', .5), (1, 'v', .6), (2, 'h', .5)])
    x = torch.randn(4, 10 * 12, 6)
    keys = torch.randn(4, 10 * 12, 5)
    batched, bstate = _reduce(atme, x, keys, TokenState.from_grid((10, 12)))
    for i in range(4):
        single, sstate = _reduce(atme, x[i:i + 1], keys[i:i + 1],
                                 TokenState.from_grid((10, 12)))
        torch.testing.assert_close(batched[i:i + 1], single, rtol=0, atol=0)
        assert torch.equal(bstate.source[i:i + 1], sstate.source)


def test_padded_lines_merge_like_the_unpadded_image():
    torch.manual_seed(5)
    x = torch.randn(1, 5, 7, 3)
    keys = torch.randn(1, 5, 7, 4)
    atme = ATME(1, schedule=[(0, 'h', .5)])
    alone, alone_state = _reduce(atme, x.flatten(1, 2), keys.flatten(1, 2),
                                 TokenState.from_grid((5, 7)))
    # batched with a full 13-wide image: image 0 is padded by 6 tokens
    padded_x = torch.cat([
        torch.cat([x, torch.randn(1, 5, 6, 3)], dim=2),
        torch.randn(1, 5, 13, 3)
    ]).flatten(1, 2)
    padded_keys = torch.cat([
        torch.cat([keys, torch.randn(1, 5, 6, 4)], dim=2),
        torch.randn(1, 5, 13, 4)
    ]).flatten(1, 2)
    state = TokenState.from_grid((5, 13),
                                 valid_shape=[(5, 7), (5, 13)])
    out, state = _reduce(atme, padded_x, padded_keys, state)
    # round(0.5 * 3) content pairs for image 0, as alone; round(0.5 * 6)
    # for image 1, so every line of the batch loses 3 and image 0 gives up
    # one padding token
    assert alone_state.shape == (5, 5) and state.shape == (5, 10)
    assert state.valid_shape == ((5, 5), (5, 10))  # host ints
    torch.testing.assert_close(
        out[:1].view(1, 5, 10, 3)[:, :, :5], alone.view(1, 5, 5, 3))
    source = state.source[:1].view(1, 5, 13)[:, :, :7]
    moved = torch.stack([source // 10, source % 10])
    expected = alone_state.source.view(1, 5, 7)
    assert torch.equal(moved, torch.stack([expected // 5, expected % 5]))


@pytest.mark.parametrize('schedule, message', [
    ([(0, 'x', .5)], "entry 0 .*direction must be one of"),
    ([(0, 'h', .5), (12, 'v', .5)], r'entry 1 \(12.*block must be an index'),
    ([(3, 'h', 1.5)], r'entry 0 .*ratio 1.5 must be in \(0, 1\]'),
    ([(3, 'h', 0)], r'ratio 0 must be in'),
    ([(2, 'h', .5), (2, 'v', .5)], 'block 2 is scheduled twice'),
    ([(2, 'h')], r'expected \(block, direction, ratio\)'),
    ('deit-l', 'Unknown ATME schedule preset'),
])
def test_bad_schedules_fail_at_build_time(schedule, message):
    with pytest.raises(ValueError, match=message):
        ATME(12, schedule=schedule)


def test_schedule_entries_as_dicts_and_presets():
    assert parse_schedule([dict(block=1, direction='v', ratio=.25)], 4) == \
        {1: ('v', .25)}
    with pytest.raises(ValueError, match='exactly the keys'):
        parse_schedule([dict(block=1, direction='v', r=2)], 4)
    for name in ('deit-t', 'deit-s', 'deit-b', 'deit-s-few'):
        assert set(parse_schedule(name, 12)) == {b for b, _, _ in
                                                 PRESETS[name]}
    with pytest.raises(ValueError, match='granularity'):
        ATME(12, schedule='deit-s', granularity='pixel')


@pytest.mark.parametrize('arch, dims', [('deit-t', 192), ('deit-s', 384),
                                        ('deit-b', 768)])
def test_few_merge_presets_reach_the_presets_flops_in_two_merges(arch, dims):
    few = parse_schedule(f'{arch}-few', 12)
    assert len(few) == 2 and min(few) == 3  # blocks 0-2 stay exact
    assert {d for d, _ in few.values()} == {'h', 'v'}
    assert schedule_flops(f'{arch}-few', (32, 32), dims, 12) == \
        pytest.approx(schedule_flops(arch, (32, 32), dims, 12), abs=0.01)


@pytest.mark.parametrize('target, grid', [(0.5, (32, 32)), (0.35, (32, 32)),
                                          (0.5, (14, 14)), (0.7, (50, 84))])
def test_for_flops_caps_the_reduction_points(target, grid):
    cfg = ATME.for_flops(target, grid, 12, 384, max_points=2)
    assert len(cfg['schedule']) <= 2
    fraction = schedule_flops(cfg['schedule'], grid, 384, 12)
    assert target - 0.04 <= fraction <= target
    # uncapped, the same target takes more points
    assert len(schedule_for_flops(target, grid, 384)) > 2


def test_for_flops_with_one_point_and_what_it_cannot_reach():
    assert schedule_for_flops(0.7, (50, 84), 384, max_points=1) == [
        (5, 'h', 0.875)]
    # one merge halves one axis at most
    with pytest.raises(ValueError, match='No schedule reaches 35%'):
        schedule_for_flops(0.35, (32, 32), 384, max_points=1)
    with pytest.raises(ValueError, match='max_points'):
        schedule_for_flops(0.5, (32, 32), 384, max_points=0)


@pytest.mark.parametrize('grid', [(8, 6), (7, 5), (14, 14)])
@pytest.mark.parametrize('prefix', [0, 1])
def test_whole_line_merges_equal_the_general_merge(grid, prefix):
    """A ratio of 1 (every pair of every line merges) takes the shape-only
    path; it gives the general path's tokens, sizes and sources bit for
    bit, odd lines and merged sizes included."""
    from cait_mm.core.atme import (merge_grid, merge_tables, merge_whole_lines,
                                   pool_tables)
    torch.manual_seed(7)
    B, C = 2, 5
    state = TokenState.from_grid(grid)
    x = torch.randn(B, prefix + grid[0] * grid[1], C)
    keys = torch.randn(B, 2, x.shape[1], 3)
    # a first, partial merge gives the second one sizes and sources
    for vertical, whole in ((True, False), (False, True), (True, True)):
        H, W = state.shape
        total = (H if vertical else W) // 2 - (0 if whole else 1)
        general = merge_grid(
            x.clone(), keys, state, prefix, vertical, total, False,
            merge_tables(B, (H, W), prefix, vertical, total, 'cpu'))
        if whole:
            pooled = merge_whole_lines(
                x.clone(), state, prefix, vertical,
                pool_tables(B, (H, W), prefix, vertical, x.dtype, 'cpu'))
            assert torch.equal(pooled[0], general[0])
            assert pooled[1].shape == general[1].shape
            assert torch.equal(pooled[1].size, general[1].size)
            assert torch.equal(pooled[1].source, general[1].source)
        x, state = general
        keys = torch.randn(B, 2, x.shape[1], 3)


def test_atme_takes_the_whole_line_path_at_a_ratio_of_one(monkeypatch):
    from cait_mm.core import atme as atme_module
    calls = []
    real = atme_module.merge_whole_lines
    monkeypatch.setattr(
        atme_module, 'merge_whole_lines',
        lambda *args: calls.append(args[2:4]) or real(*args))
    atme = ATME(3, schedule=[(0, 'h', 1.0), (1, 'v', 0.5), (2, 'v', 1.0)])
    x, state = _reduce(atme, torch.randn(2, 8 * 8, 4),
                       torch.randn(2, 8 * 8, 3), TokenState.from_grid((8, 8)))
    assert calls == [(0, False), (0, True)]  # (prefix, vertical)
    assert state.shape == (3, 4) and x.shape == (2, 12, 4)
    # every patch is in one token: the sizes of each image sum to 64
    assert state.size.sum(1).tolist() == [64., 64.]
    assert state.size.min() >= 4  # no token skipped the whole-line merges
