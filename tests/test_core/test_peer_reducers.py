"""ToMe and EViT in the token-reducer slot: exact restoration of identical
tokens, proportional attention, batch independence, token counts and
equal-FLOPs settings."""
import pytest
import torch
from torch import nn

from cait_mm.core import (TOKEN_REDUCERS, Block, EViT, TokenState, ToMe,
                          build_token_reducer)
from .test_tps import one_hot_attention, random_attention


def _pairs(B, N, C, seed=0):
    """Patch tokens whose pairs (2i, 2i + 1) are identical, pairs apart."""
    g = torch.Generator().manual_seed(seed)
    half = torch.randn(B, N // 2, C, generator=g)
    return half.repeat_interleave(2, dim=1)


def test_tome_merges_identical_pairs_and_restores_them_exactly():
    B, N, C = 2, 24, 8
    x = _pairs(B, N, C)
    tome = ToMe(num_layers=2, r=5)
    tokens = torch.cat([torch.randn(B, 1, C), x], dim=1)
    keys = tokens[:, None]  # one head; the keys are the tokens
    info = random_attention(B, 1 + N)._replace(k=keys)
    out, state = tome(0, tokens, info, TokenState.from_grid((4, 6)), 1)
    assert out.shape == (B, 1 + N - 5, C) and state.shape is None
    assert torch.equal(out[:, 0], tokens[:, 0])
    assert torch.equal(state.restore(out[:, 1:]), x)
    assert state.size.sum(1).tolist() == [N, N]
    assert sorted(state.size[0].tolist()).count(2.) == 5
    # a second step composes the source map: patches held together stay
    # together, and every patch is held by a token
    out2, state2 = tome(1, out, info._replace(k=out[:, None]), state, 1)
    assert out2.shape[1] == 1 + N - 10
    assert state2.size.sum(1).tolist() == [N, N]
    for b in range(B):
        for p in range(N):
            together = state.source[b] == state.source[b, p]
            assert (state2.source[b][together] == state2.source[b, p]).all()
        counts = torch.bincount(state2.source[b], minlength=N - 10)
        assert torch.equal(counts.float(), state2.size[b])


def test_evit_fuses_identical_tokens_into_the_same_token():
    B, N, C = 2, 10, 4
    v = torch.randn(B, 1, C)
    x = v.expand(B, N, C).clone()
    x[:, [2, 7]] = torch.randn(B, 2, C)  # the attentive ones
    logits = torch.zeros(B, N)
    logits[:, [2, 7]] = 5.
    evit = EViT(num_layers=1, blocks=(0, ), keep_ratio=0.2, prop_attn=True)
    tokens = torch.cat([torch.randn(B, 1, C), x], dim=1)
    out, state = evit(0, tokens, one_hot_attention(logits),
                      TokenState.from_grid((2, 5)), 1)
    assert out.shape == (B, 1 + 2 + 1, C)
    assert state.source[0].tolist() == [2, 2, 0, 2, 2, 2, 2, 1, 2, 2]
    assert state.size[0].tolist() == [1., 1., 8.]
    torch.testing.assert_close(state.restore(out[:, 1:]), x, rtol=0,
                               atol=1e-6)
    with pytest.raises(ValueError, match='no class token'):
        evit(0, x, one_hot_attention(logits[:, 1:], num_prefix=0),
             TokenState.from_grid((2, 5)), 0)


def _stack(reducer, tokens, grid, blocks):
    state = TokenState.from_grid(grid)
    x = tokens
    for i, block in enumerate(blocks):
        bias = state.attn_bias(1)
        if i in reducer.blocks:
            x, info = block.forward_attn(x, bias)
            x, state = reducer(i, x, info, state, 1)
            x = block.forward_mlp(x)
        else:
            x = block(x, bias)
    return x, state


@pytest.mark.parametrize('cfg', [
    dict(type='ToMe', r=4, blocks=(0, )),
    dict(type='EViT', blocks=(0, ), keep_ratio=0.5, prop_attn=True),
])
def test_proportional_attention_makes_merged_duplicates_exact(cfg):
    """Tokens that come in identical pairs (ToMe), or identical ones fused
    (EViT), count in attention as the patches they stand for: restored, the
    reduced model computes what the dense one does."""
    torch.manual_seed(0)
    C, grid = 16, (4, 4)
    blocks = nn.ModuleList(Block(C, 2, 32) for _ in range(3)).eval()
    x = _pairs(2, 16, C) if cfg['type'] == 'ToMe' else \
        torch.randn(2, 1, C).expand(2, 16, C).clone()
    tokens = torch.cat([torch.randn(2, 1, C), x], dim=1)
    reducer = build_token_reducer(cfg, 3, C)
    with torch.no_grad():
        dense, _ = _stack(build_token_reducer(dict(type='ToMe', r=0), 3, C),
                          tokens, grid, blocks)
        reduced, state = _stack(reducer, tokens, grid, blocks)
    assert reduced.shape[1] < dense.shape[1]
    torch.testing.assert_close(state.restore(reduced[:, 1:]), dense[:, 1:],
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reduced[:, 0], dense[:, 0], rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize('cfg', [
    dict(type='ToMe', r=6),
    dict(type='EViT', keep_ratio=0.6),
])
def test_per_image_results_in_a_batch_equal_single_image_results(cfg):
    from cait_mm.models import CAITViT
    torch.manual_seed(0)
    model = CAITViT(
        arch=dict(embed_dims=32, num_layers=12, num_heads=2, mlp_ratio=2.),
        img_size=64, out_indices=(5, 11), token_reducer=cfg).eval()
    model.init_weights()
    x = torch.randn(3, 3, 64, 80)
    with torch.no_grad():
        batch = model(x)
        alone = [model(x[i:i + 1]) for i in range(3)]
        tokens, state = model.embed(x)
        counts = [t.shape[1] - 1 for _, t, _ in model.run_blocks(tokens,
                                                                 state)]
    for i in range(3):
        for b, a in zip(batch, alone[i]):
            torch.testing.assert_close(b[i:i + 1], a, rtol=1e-4, atol=1e-5)
    assert batch[0].shape == (3, 32, 4, 5)
    # the counts it announces are the counts it runs
    assert counts == model.token_reducer.token_counts((4, 5))
    with pytest.raises(NotImplementedError, match='padded batches'):
        model(x, valid_sizes=[(64, 80), (32, 48), (64, 80)])


@pytest.mark.parametrize(
    'kind', sorted(['ATME', 'ATMEAdaptive', 'TPS', 'ToMe', 'EViT']))
@pytest.mark.parametrize('grid', [(14, 14), (32, 32)])
@pytest.mark.parametrize('target', [0.5, 0.35])
def test_settings_for_a_flops_target_are_within_3_percent(kind, grid,
                                                          target):
    cfg = TOKEN_REDUCERS[kind].for_flops(target, grid, 12, 384)
    assert cfg['type'] == kind
    reducer = build_token_reducer(cfg, 12, 384)
    assert abs(reducer.flops_fraction(grid) - target) <= 0.03 * target
    if kind.startswith('ATME'):  # at most, as schedule_for_flops picks
        assert reducer.flops_fraction(grid) <= target


def test_token_counts_of_each_reducer():
    assert ToMe(4, r=8).token_counts((14, 14)) == [188, 180, 172, 164]
    assert ToMe(3, r=100, blocks=(1, )).token_counts((4, 4)) == [16, 8, 8]
    assert EViT(10, keep_ratio=0.7).token_counts((14, 14)) == \
        [196] * 3 + [139] * 3 + [99] * 3 + [71]
    # a share of the tokens entering each block, rounded half up
    assert ToMe(3, ratio=0.25).token_counts((4, 4)) == [12, 9, 7]
    assert ToMe(3, ratio=0.25).config() == dict(type='ToMe', ratio=0.25,
                                                blocks=[0, 1, 2])
    with pytest.raises(ValueError, match='r must be an int'):
        ToMe(4, r=-1)
    with pytest.raises(ValueError, match='set r or ratio, not both'):
        ToMe(4, r=2, ratio=0.1)
    with pytest.raises(ValueError, match='ratio=0.7 is outside'):
        ToMe(4, ratio=0.7)
    with pytest.raises(ValueError, match='keep_ratio=1.5'):
        EViT(12, keep_ratio=1.5)


@pytest.mark.parametrize('kind', sorted(TOKEN_REDUCERS))
def test_supports_padding_says_what_a_padded_batch_does(kind):
    """The flag that tools read (compress leaves reducers out of detection
    rows by it) is what the reducer does with a padded batch."""
    from cait_mm.analysis.compress import reducer_for_flops
    from cait_mm.models import CAITViT
    arch = dict(embed_dims=32, num_layers=12, num_heads=2, mlp_ratio=2.)
    cfg = dict(type=kind, reducer=reducer_for_flops(
        'ATME', 0.7, (4, 5), arch)) if kind == 'TokenCountBound' else \
        reducer_for_flops(kind, 0.7, (4, 5), arch)
    torch.manual_seed(0)
    model = CAITViT(arch=arch, img_size=64, out_indices=(11, ),
                    token_reducer=cfg).eval()
    x = torch.randn(2, 3, 64, 80)
    sizes = [(64, 80), (32, 48)]
    with torch.no_grad():
        if TOKEN_REDUCERS[kind].supports_padding:
            out, = model(x, valid_sizes=sizes)
            assert out.shape == (2, 32, 4, 5)
        else:
            with pytest.raises(NotImplementedError, match='padded batches'):
                model(x, valid_sizes=sizes)
