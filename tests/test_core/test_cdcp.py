"""CDCP core: channel groups, selection invariants, group lasso, export."""
import pytest
import torch

from cait_mm.core import Block, ChannelGroup, compact_block, ramp_ratio

GROUPS = ('qk', 'v', 'mlp')


def _groups(block):
    return [block.attn.qk_compactor, block.attn.v_compactor,
            block.mlp.compactor]


def _perturbed_block(seed=0, dim=48, heads=4, hidden=96):
    torch.manual_seed(seed)
    block = Block(dim, heads, hidden, channel_groups=GROUPS)
    with torch.no_grad():
        for group in _groups(block):
            group.weight.add_(0.3 * torch.randn_like(group.weight))
    return block


def test_identity_compactors_leave_the_block_unchanged():
    torch.manual_seed(0)
    plain = Block(48, 4, 96).eval()
    with_groups = Block(48, 4, 96, channel_groups=GROUPS).eval()
    missing, unexpected = with_groups.load_state_dict(
        plain.state_dict(), strict=False)
    assert not unexpected
    assert sorted(missing) == [
        'attn.qk_compactor.pruned', 'attn.qk_compactor.weight',
        'attn.v_compactor.pruned', 'attn.v_compactor.weight',
        'mlp.compactor.pruned', 'mlp.compactor.weight'
    ]
    x = torch.randn(2, 10, 48)
    with torch.no_grad():
        torch.testing.assert_close(with_groups(x), plain(x), rtol=0,
                                   atol=1e-6)


@pytest.mark.parametrize('ratio', [0.0, 0.25, 0.5, 0.9])
def test_selection_is_consistent_across_heads_and_q_k(ratio):
    block = _perturbed_block()
    for group in _groups(block):
        pruned = group.select(ratio)
        count = int(ratio * group.dim + 1e-6)
        # head-level consistency: every head prunes the same number
        assert pruned.sum(-1).tolist() == [count] * group.heads
        # and they are that head's least important channels
        importance = group.importance()
        for head in range(group.heads):
            if 0 < count < group.dim:
                assert importance[head][pruned[head]].max() <= \
                    importance[head][~pruned[head]].min()
    # attention-level consistency: q and k prune the same dims, through one
    # mask, and the exported block keeps one qk width for both
    qk = block.attn.qk_compactor
    assert qk.weight.shape[0] == 2 and qk.pruned.shape == (4, 12)
    block.eval()
    small = compact_block(block)
    keep = 12 - int(ratio * 12 + 1e-6)
    assert small.attn.qk_dim == keep
    assert small.attn.qkv.out_features == 4 * (2 * keep + small.attn.v_dim)


def test_qk_importance_combines_q_and_k_rows():
    group = ChannelGroup('qk', 2, 1, 3)
    with torch.no_grad():
        group.weight.zero_()
        group.weight[0, 0, 0, 0] = 3.  # q row of channel 0
        group.weight[1, 0, 0, 1] = 4.  # k row of channel 0
        group.weight[0, 0, 1, 1] = 2.  # channel 1: q only
        group.weight[1, 0, 2, 2] = 1.  # channel 2: k only
    torch.testing.assert_close(group.importance(),
                               torch.tensor([[5., 2., 1.]]))
    assert group.select(0.67).tolist() == [[False, True, True]]


def test_masked_block_equals_exported_block():
    block = _perturbed_block()
    for group, ratio in zip(_groups(block), (0.5, 0.25, 0.75)):
        group.select(ratio)
    block.eval()
    small = compact_block(block)
    assert (small.attn.qk_dim, small.attn.v_dim,
            small.mlp.fc1.out_features) == (6, 9, 24)
    assert small.attn.qk_compactor is None and small.mlp.compactor is None
    assert small.attn.scale == block.attn.scale == 12**-0.5
    x = torch.randn(3, 17, 48)
    with torch.no_grad():
        torch.testing.assert_close(small(x), block(x), rtol=0, atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(
        p.numel() for n, p in block.named_parameters()
        if 'compactor' not in n)


def test_pruned_channels_get_no_task_gradient_until_released():
    block = _perturbed_block().train()
    group = block.mlp.compactor
    group.select(0.5)
    x = torch.randn(2, 5, 48)
    block(x).pow(2).sum().backward()
    grad = group.weight.grad[0, 0]
    assert grad[group.pruned[0]].abs().max() == 0
    assert grad[~group.pruned[0]].abs().max() > 0

    # a pruned channel whose importance rises is released at the next
    # re-ranking and trains again
    channel = int(group.pruned[0].nonzero()[0])
    with torch.no_grad():
        group.weight[0, 0, channel] *= 100
    group.select(0.5)
    assert not group.pruned[0, channel]
    group.weight.grad = None
    block(x).pow(2).sum().backward()
    assert group.weight.grad[0, 0, channel].abs().max() > 0


def test_group_lasso_pulls_pruned_rows_to_exactly_zero():
    block = _perturbed_block()
    group = block.attn.qk_compactor
    group.select(0.5)
    kept_before = group.weight[:, ~group.pruned].clone()
    norms = group.importance()[group.pruned]
    steps = int(norms.max() / 0.1) + 1
    for _ in range(steps):
        group.shrink_pruned(0.1)
    # q and k rows of a pruned channel vanish together, the rest is intact
    assert group.weight[:, group.pruned].abs().max() == 0
    assert torch.equal(group.weight[:, ~group.pruned], kept_before)


def test_a_ratio_that_empties_a_head_is_refused():
    group = ChannelGroup('v', 1, 6, 4)
    assert group.num_to_prune(0.74) == 2
    with pytest.raises(ValueError, match='would leave no v channel'):
        group.select(1.0)
    with pytest.raises(ValueError, match=r'must be in \[0, 1\)'):
        group.select(1.5)


def test_ramp():
    assert ramp_ratio(0.5, 0, 10, 30) == 0
    assert ramp_ratio(0.5, 10, 10, 30) == 0
    assert ramp_ratio(0.5, 20, 10, 30) == pytest.approx(0.25)
    assert ramp_ratio(0.5, 30, 10, 30) == 0.5
    assert ramp_ratio(0.5, 99, 10, 10) == 0.5


def test_compactors_sit_where_the_layers_say():
    """The attention's table of qkv slices is the one description of where
    its compactors sit: folding, pruning and loading all read it."""
    block = _perturbed_block()
    compactors = block.compactors()
    assert list(compactors) == ['qk', 'v', 'mlp']
    names = {name for name, module in block.named_modules()
             if isinstance(module, ChannelGroup)}
    assert names == {'attn.qk_compactor', 'attn.v_compactor',
                     'mlp.compactor'}
    # q and k are the two members of the 'qk' group, v the one of 'v'
    assert [kind for _, kind, _ in block.attn.QKV_SLICES] == ['qk', 'qk', 'v']
    assert compactors['qk'].weight.shape[0] == 2
    for group in compactors.values():
        group.select(0.5)
    weights, biases = block.attn.folded_qkv(masked=True)
    pruned = compactors['qk'].pruned.flatten()
    for part in (0, 1):  # the same dims of q and k are zeroed
        assert weights[part][pruned].abs().sum() == 0
        assert biases[part][pruned].abs().sum() == 0
        assert weights[part][~pruned].abs().sum() > 0
    assert weights[2][compactors['v'].pruned.flatten()].abs().sum() == 0
    fc1, _ = block.mlp.folded_fc1(masked=True)
    assert fc1[compactors['mlp'].pruned.flatten()].abs().sum() == 0
    assert Block(48, 4, 96).compactors() == {}
