"""The fast ATME merges against the reference (cait_mm.core.atme_reference).

Each fast path must form the reference's pairs: the sizes and the source map
are compared exactly, the tokens to float rounding (a size-weighted mean
against ``torch.lerp``). The reference ranks pairs by float64 similarities,
the fast paths by float32 ones summed in other orders, so pairs whose
similarities differ by rounding only could rank the other way: the ties
below are exact (the same key values in every tied pair), the random inputs
have no near-ties at their seeds.

The Triton kernels run on CUDA, or under Triton's interpreter in a process of
their own (``TestTriton``; tests/test_core/test_atme_triton_cpu.py starts
it on a machine without a GPU).
"""
import os

import pytest
import torch

from cait_mm.core import AttentionInfo, TokenState, atme_triton
from cait_mm.core.atme import ATME
from cait_mm.core.atme_reference import merge_reference

INTERPRETED = os.environ.get('TRITON_INTERPRET') == '1'
CUDA = torch.cuda.is_available()
DEVICE = 'cuda' if CUDA else 'cpu'

# ratios of the presets and of schedules for a FLOPs target
RATIOS = (0.25, 0.3, 0.5, 0.6, 0.875, 1.0)


def _inputs(grid, num_prefix=1, sized=True, seed=0, batch=3, device='cpu'):
    """Tokens ``(B, P + H*W, C)``, keys ``(B, h, P + H*W, d)`` and, if
    ``sized``, sizes and a source map from an earlier merge of a larger
    grid."""
    g = torch.Generator().manual_seed(seed)
    H, W = grid
    T = num_prefix + H * W
    x = torch.randn(batch, T, 5, generator=g)
    keys = torch.randn(batch, 2, T, 8, generator=g)
    size = source = None
    if sized:
        size = torch.randint(1, 6, (batch, H * W), generator=g).float()
        source = torch.randint(0, H * W, (batch, 2 * H * W + 3), generator=g)
    return tuple(t if t is None else t.to(device)
                 for t in (x, keys, size, source))


def _state(grid, size, source, valid_shape=None):
    state = TokenState.from_grid(grid, valid_shape=valid_shape)
    state.size, state.source = size, source
    return state


def _pad_mask(grid, cells, device='cpu'):
    if cells is None:
        return None
    H, W = grid
    rows, cols = torch.arange(H)[:, None], torch.arange(W)
    return torch.stack([~((rows < h) & (cols < w)) for h, w in cells
                        ]).flatten(1).to(device)


def _fast(x, keys, state, num_prefix, vertical, ratio, line_mode,
          kernel='torch'):
    """One merge through :class:`ATME`: the padded path when ``state`` has
    a ``valid_shape``, else ``merge_grid`` or the Triton kernels."""
    atme = ATME(1, schedule=[(0, 'v' if vertical else 'h', ratio)],
                granularity='line' if line_mode else 'token', kernel=kernel)
    info = AttentionInfo(q=keys, k=keys, scale=1.)
    return atme(0, x.clone(), info, state, num_prefix)


def _assert_same(got, expected):
    out, state = got
    ref_out, ref_size, ref_source, ref_pad = expected
    assert state.shape[0] * state.shape[1] == ref_size.shape[1]
    # the same pairs: sizes and source map exactly
    assert torch.equal(state.size, ref_size)
    assert torch.equal(state.source, ref_source)
    torch.testing.assert_close(out, ref_out)
    if ref_pad is not None:
        assert torch.equal(state.padding_mask(), ref_pad)


def _check(x, keys, size, source, grid, vertical, ratio, line_mode,
           num_prefix, cells=None):
    """The padded path against the reference, and when ``cells`` is none
    (no padding) the unpadded path too."""
    full = cells or [grid] * x.shape[0]
    expected = merge_reference(x, keys, grid, vertical, ratio, size, source,
                               line_mode, num_prefix, _pad_mask(grid, full))
    padded = _state(grid, size, source, full)
    _assert_same(
        _fast(x, keys, padded, num_prefix, vertical, ratio, line_mode),
        expected)
    if cells is None:
        assert not expected[3].any()
        expected = merge_reference(x, keys, grid, vertical, ratio, size,
                                   source, line_mode, num_prefix)
        _assert_same(
            _fast(x, keys, _state(grid, size, source), num_prefix, vertical,
                  ratio, line_mode), expected)
    return expected


# ---------------------------------------------------------------------------
# the reference itself, on cases worked out by hand


def test_pairs_are_adjacent_one_way_and_size_weighted():
    # one row: pairs (0,1) (2,3) (4,5), token 6 unpaired; (2,3) is the
    # least similar pair and survives
    keys = torch.tensor([[[1., 0], [1, .1], [1, 0], [0, 1], [0, 1], [0, 1],
                          [0, 1]]])[:, None]
    x = torch.arange(7.).view(1, 7, 1)
    size = torch.tensor([[1., 3, 1, 1, 2, 2, 1]])
    out, new_size, source, pad = merge_reference(x, keys, (1, 7), False,
                                                 2 / 3, size)
    assert out.flatten().tolist() == [0.75, 2., 3., 4.5, 6.]
    assert new_size.tolist() == [[4., 1, 1, 4, 1]]
    assert source.tolist() == [[0, 0, 1, 2, 3, 3, 4]]
    assert pad is None


def test_ties_go_to_the_lower_pair_and_columns_mirror_rows():
    x = torch.arange(8.).view(1, 8, 1)
    keys = torch.ones(1, 1, 8, 3)  # every pair ties
    out, _, source, _ = merge_reference(x, keys, (1, 8), False, 0.5)
    assert out.flatten().tolist() == [0.5, 2.5, 4., 5., 6., 7.]
    assert source.tolist() == [[0, 0, 1, 1, 2, 3, 4, 5]]
    out_v, _, source_v, _ = merge_reference(x, keys, (8, 1), True, 0.5)
    assert torch.equal(out_v, out) and torch.equal(source_v, source)


def test_a_short_content_drops_padding_at_the_end_of_its_lines():
    # image 0: content 1x3 in a 2x6 grid; image 1 full. ratio 1: image 0
    # merges 1 pair a row, image 1 three: image 0 drops 2 padding tokens
    x = torch.arange(24.).view(2, 12, 1)
    keys = torch.ones(2, 1, 12, 2)
    pad = torch.tensor([[0, 0, 0, 1, 1, 1] + [1] * 6, [0] * 12]).bool()
    out, size, source, new_pad = merge_reference(x, keys, (2, 6), False, 1.,
                                                 pad_mask=pad)
    assert out[0].flatten().tolist() == [0.5, 2, 3, 6.5, 8, 9]
    # the dropped tokens 4, 5 go to the token before them, their sizes
    # nowhere; the padding row pairs (0,1) like the content above it
    assert source[0].tolist() == [0, 0, 1, 2, 2, 2, 3, 3, 4, 5, 5, 5]
    assert size[0].tolist() == [2., 1, 1, 2, 1, 1]
    assert new_pad[0].tolist() == [False, False, True, True, True, True]
    assert source[1].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert not new_pad[1].any()


def test_the_content_must_be_the_top_left_corner():
    pad = torch.zeros(1, 12, dtype=torch.bool)
    pad[0, 0] = True
    with pytest.raises(ValueError, match='top-left corner'):
        merge_reference(torch.randn(1, 12, 2), torch.randn(1, 1, 12, 2),
                        (3, 4), False, 0.5, pad_mask=pad)


# ---------------------------------------------------------------------------
# the fast paths against it


@pytest.mark.parametrize('grid', [(6, 8), (7, 5), (5, 9), (1, 7)])
@pytest.mark.parametrize('vertical', [False, True])
@pytest.mark.parametrize('line_mode', [False, True])
def test_random_tokens(grid, vertical, line_mode):
    for seed, ratio in enumerate(RATIOS):
        for num_prefix, sized in ((1, True), (0, False)):
            x, keys, size, source = _inputs(grid, num_prefix, sized, seed)
            _check(x, keys, size, source, grid, vertical, ratio, line_mode,
                   num_prefix)


def _copy_pair(keys, num_prefix, grid, vertical, src, dst):
    """Give pair ``dst`` of every line the keys of pair ``src``: an exact
    tie (in line mode too: the same values in every line)."""
    H, W = grid
    k = keys[:, :, num_prefix:].view(*keys.shape[:2], H, W, -1)
    if vertical:
        k = k.transpose(2, 3)
    k[:, :, :, 2 * dst:2 * dst + 2] = k[:, :, :, 2 * src:2 * src + 2]


@pytest.mark.parametrize('vertical', [False, True])
@pytest.mark.parametrize('line_mode', [False, True])
def test_exact_ties_identical_tokens_and_zero_keys(vertical, line_mode):
    grid = (8, 9) if vertical else (9, 8)
    for ratio in (0.25, 0.5, 0.875):
        # two pairs tie in every line, one of them inside the top r
        x, keys, size, source = _inputs(grid, 1, True, seed=7)
        _copy_pair(keys, 1, grid, vertical, src=3, dst=1)
        _copy_pair(keys, 1, grid, vertical, src=0, dst=2)
        _check(x, keys, size, source, grid, vertical, ratio, line_mode, 1)
        # a flat region: every pair of the first lines ties
        x, keys, size, source = _inputs(grid, 1, True, seed=8)
        flat = keys[:, :, 1:].view(3, 2, *grid, 8)
        (flat[:, :, :, :3] if vertical else flat[:, :, :3]).fill_(0.5)
        _check(x, keys, size, source, grid, vertical, ratio, line_mode, 1)
        # zero keys (0-similar to all) next to random ones
        (flat[:, :, :, 3:5] if vertical else flat[:, :, 3:5]).zero_()
        _check(x, keys, size, source, grid, vertical, ratio, line_mode, 1)
    # identical tokens everywhere: every pair ties, merges are exact
    x = torch.randn(2, 1, 6).expand(2, 73, 6).contiguous()
    keys = torch.randn(2, 2, 1, 4).expand(2, 2, 73, 4).contiguous()
    for ratio in RATIOS:
        out, size, _, _ = _check(x, keys, None, None, grid, vertical, ratio,
                                 line_mode, 1)
        assert torch.equal(out, x[:, :out.shape[1]])


CONTENTS = [
    # (grid, per-image content): odd and even lengths, a full image, an
    # image shorter on both axes, one no image fills
    ((7, 10), [(7, 10), (5, 7), (7, 4)]),
    ((9, 8), [(3, 8), (9, 5), (8, 8)]),
    ((6, 11), [(6, 9), (2, 2), (5, 10)]),
]


@pytest.mark.parametrize('grid, cells', CONTENTS)
@pytest.mark.parametrize('vertical', [False, True])
@pytest.mark.parametrize('line_mode', [False, True])
def test_padded_batches(grid, cells, vertical, line_mode):
    for seed, ratio in enumerate(RATIOS):
        x, keys, size, source = _inputs(grid, 1, seed % 2 == 0, seed)
        _check(x, keys, size, source, grid, vertical, ratio, line_mode, 1,
               cells)
    # ties in the padded batch: a flat image (every pair ties) beside
    # random ones
    x, keys, size, source = _inputs(grid, 1, True, seed=11)
    keys[1] = 1.
    _check(x, keys, size, source, grid, vertical, 0.5, line_mode, 1, cells)


@pytest.mark.parametrize('schedule', ['deit-s', 'deit-s-few', [
    (0, 'v', 0.3), (1, 'h', 1.0), (2, 'h', 0.6), (3, 'v', 1.0)
]])
@pytest.mark.parametrize('line_mode', [False, True])
@pytest.mark.parametrize('padded', [False, True])
def test_a_whole_schedule(schedule, line_mode, padded):
    """Steps chained, sizes, source map and padding carried from one to
    the next, as a ViT's blocks do."""
    grid = (14, 17)
    cells = [(14, 17), (11, 9), (13, 16)] if padded else None
    atme = ATME(12, schedule=schedule,
                granularity='line' if line_mode else 'token')
    x, _, _, _ = _inputs(grid, 1, False, seed=3)
    g = torch.Generator().manual_seed(4)
    state = TokenState.from_grid(grid, valid_shape=cells)
    ref = (x, None, None, _pad_mask(grid, cells))
    for block in sorted(atme.blocks):
        direction, ratio = atme.schedule[block]
        keys = torch.randn(3, 2, ref[0].shape[1], 8, generator=g)
        shape = state.shape
        # both steps start from the same tokens (the merge writes into x)
        got = atme(block, ref[0].clone(),
                   AttentionInfo(q=keys, k=keys, scale=1.), state, 1)
        ref = merge_reference(ref[0], keys, shape, direction == 'v', ratio,
                              ref[1], ref[2], line_mode, 1, ref[3])
        _assert_same(got, ref)
        state = got[1]


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('line_mode', [False, True])
def test_half_precision_keys_rank_in_fp32(dtype, line_mode):
    """Under autocast the keys are fp16 or bf16. Every path ranks the pairs
    in fp32 (the Triton kernels always did): similarities computed in half
    precision round to a few hundred values, so the unpadded and the padded
    path chose other pairs for one merge in three with bf16 keys, and an
    image merged differently alone and in a padded batch."""
    grid = (16, 16)
    for seed in range(6):
        x, keys, size, source = _inputs(grid, 1, True, seed)
        for vertical in (False, True):
            _check(x, keys.to(dtype), size, source, grid, vertical, 0.5,
                   line_mode, 1)


@pytest.mark.skipif(
    not atme_triton.available() or not (CUDA or INTERPRETED),
    reason='needs a CUDA device, or TRITON_INTERPRET=1 (its own process)')
class TestTriton:
    """The Triton kernels (unpadded batches) against the reference."""

    @pytest.mark.parametrize('grid', [(6, 8), (7, 5)])
    @pytest.mark.parametrize('vertical', [False, True])
    @pytest.mark.parametrize('line_mode', [False, True])
    def test_random_and_tied_tokens(self, grid, vertical, line_mode):
        # sized tokens whose first two pairs tie in every line, under
        # autocast's fp16 keys; then unsized ones, every pair merging
        for seed, ratio in enumerate((0.5, 1.0)):
            x, keys, size, source = _inputs(grid, 1, seed == 0, seed,
                                            device=DEVICE)
            if seed == 0:
                _copy_pair(keys, 1, grid, vertical, src=0, dst=1)
                keys = keys.half()
            expected = merge_reference(x, keys, grid, vertical, ratio, size,
                                       source, line_mode, 1)
            got = _fast(x, keys, _state(grid, size, source), 1, vertical,
                        ratio, line_mode, kernel='triton')
            _assert_same(got, expected)
