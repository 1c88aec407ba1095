import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cait_mm.core import TPS, AttentionInfo, Block, TokenState, squeeze_tokens
from cait_mm.core.token_reducer import build_token_reducer

E = math.e


def one_hot_attention(patch_logits, num_prefix=1):
    """``AttentionInfo`` whose class token gives patch ``t`` the logit
    ``patch_logits[b][t]`` (one head, one-hot keys, scale 1)."""
    logits = torch.as_tensor(patch_logits, dtype=torch.float32)
    B, N = logits.shape
    T = num_prefix + N
    q = torch.zeros(B, 1, T, T)
    q[:, 0, 0, num_prefix:] = logits
    k = torch.eye(T).expand(B, 1, T, T).clone()
    return AttentionInfo(q, k, 1.0)


def random_attention(B, T, heads=2, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, heads, T, dim, generator=g)
    k = torch.randn(B, heads, T, dim, generator=g)
    return AttentionInfo(q, k, dim**-0.5)


# ----------------------------------------------------------------- squeeze
def test_squeeze_formula_on_hand_made_tokens():
    # patch logits 1, 4, 2, 3: patches 1 and 3 are kept (ratio 0.5 of 4)
    x_patch = torch.tensor([[[1., 0.], [2., 0.], [0.5, -0.5], [0., 3.]]])
    x = torch.cat([torch.tensor([[[7., 7.]]]), x_patch], dim=1)
    tps = TPS(num_layers=2, blocks=[0], keep_ratio=0.5)
    out, state = tps(0, x, one_hot_attention([[1., 4., 2., 3.]]),
                     TokenState.from_grid((2, 2)), num_prefix=1)
    # patch 0 = (1, 0): cosine 1 with host (2, 0), 0 with (0, 3)
    # patch 2 = (.5, -.5): cosine 1/sqrt(2) with (2, 0), -1/sqrt(2) with (0, 3)
    s = math.exp(1 / math.sqrt(2))
    host0 = (E * torch.tensor([2., 0.]) + E * torch.tensor([1., 0.]) +
             s * torch.tensor([.5, -.5])) / (E + E + s)
    host1 = torch.tensor([0., 3.])  # absorbs nothing: unchanged
    expected = torch.stack([torch.tensor([7., 7.]), host0, host1])[None]
    torch.testing.assert_close(out, expected)
    assert out[0, 2].tolist() == [0., 3.]
    assert state.source.tolist() == [[0, 0, 0, 1]]
    assert state.shape is None and state.size is None


def test_squeeze_weights_by_exp_similarity():
    # one host, two pruned tokens at cosines 0.6 and 0
    x = torch.tensor([[[1., 0.], [3., 4.], [0., 2.]]])
    kept, host = squeeze_tokens(x, torch.tensor([[0]]), torch.tensor([[1,
                                                                       2]]))
    s1, s2 = math.exp(0.6), math.exp(0.)
    expected = (E * torch.tensor([1., 0.]) + s1 * torch.tensor([3., 4.]) +
                s2 * torch.tensor([0., 2.])) / (E + s1 + s2)
    torch.testing.assert_close(kept[0, 0], expected)
    assert host.tolist() == [[0, 0]]


def test_hosts_are_never_matched_among_themselves():
    # two kept tokens that are near-duplicates (a similarity-only merge would
    # fuse them) and one pruned token closest to the second one
    x_patch = torch.tensor([[[1., 0.], [1., .01], [0., 1.]]])
    x = torch.cat([torch.zeros(1, 1, 2), x_patch], dim=1)
    tps = TPS(num_layers=1, blocks=[0], keep_ratio=2 / 3)
    out, state = tps(0, x, one_hot_attention([[3., 2., 1.]]),
                     TokenState.from_grid((1, 3)), num_prefix=1)
    assert out.shape == (1, 3, 2)
    assert out[0, 1].tolist() == [1., 0.]  # untouched by its twin
    assert state.source.tolist() == [[0, 1, 1]]
    s = math.exp(.01 / math.hypot(1., .01))
    torch.testing.assert_close(
        out[0, 2], (E * torch.tensor([1., .01]) + s * torch.tensor([0., 1.])) /
        (E + s))


def test_random_tokens_hosts_only_from_kept_set():
    torch.manual_seed(0)
    B, N, C = 3, 20, 8
    x = torch.randn(B, 1 + N, C)
    tps = TPS(num_layers=1, blocks=[0], keep_ratio=0.4)
    out, state = tps(0, x, random_attention(B, 1 + N),
                     TokenState.from_grid((4, 5)), num_prefix=1)
    K = 8
    assert out.shape == (B, 1 + K, C)
    for b in range(B):
        holders = state.source[b]
        assert holders.min() >= 0 and holders.max() < K
        # every kept token still holds its own patch: K distinct holders,
        # and a host that absorbed nothing is exactly its input token
        assert holders.unique().numel() == K
        for j in range(K):
            members = (holders == j).nonzero().flatten()
            if members.numel() == 1:
                assert torch.equal(out[b, 1 + j], x[b, 1 + members[0]])


# ------------------------------------------------------------------ counts
def test_kept_counts_compound_relative_to_initial_count():
    tps = build_token_reducer(dict(type='TPS'), num_layers=12)
    assert tps.blocks == {3, 6, 9}
    assert tps.num_kept(196) == [137, 96, 67]
    # 0.7 ** 3 * 1000 is 342.99999999999994 in floats
    assert tps.num_kept(1000) == [700, 490, 343]
    tps = TPS(num_layers=4, blocks=[0, 1, 2], keep_ratio=[.5, .8, 1.])
    assert tps.num_kept(63) == [31, 25, 25]
    assert TPS(num_layers=1, blocks=[0], keep_ratio=.01).num_kept(10) == [1]


def _run_stack(reducer, x, blocks, grid, num_prefix=1):
    """The backbone's loop: attention half -> reducer -> MLP half."""
    state = TokenState.from_grid(grid)
    counts = []
    for i, block in enumerate(blocks):
        x, info = block.forward_attn(x, state.attn_bias(num_prefix))
        if i in reducer.blocks:
            x, state = reducer(i, x, info, state, num_prefix)
        x = block.forward_mlp(x)
        counts.append(x.shape[1] - num_prefix)
    return x, state, counts


def make_blocks(num=12, dim=32, seed=0):
    torch.manual_seed(seed)
    return nn.ModuleList(Block(dim, 2, 2 * dim) for _ in range(num)).eval()


@pytest.mark.parametrize('score', ['attn', 'learned'])
def test_block_stack_composes_and_restores_full_map(score):
    blocks = make_blocks()
    reducer = build_token_reducer(
        dict(type='TPS', score=score), num_layers=12, embed_dims=32).eval()
    H0, W0, B = 10, 12, 2
    x = torch.randn(B, 1 + H0 * W0, 32)
    with torch.no_grad():
        out, state, counts = _run_stack(reducer, x, blocks, (H0, W0))
    n = reducer.num_kept(H0 * W0)  # [84, 58, 41]
    assert counts == [120] * 3 + [n[0]] * 3 + [n[1]] * 3 + [n[2]] * 3
    fmap = state.to_map(out[:, 1:])
    assert fmap.shape == (B, 32, H0, W0)
    assert state.source.shape == (B, H0 * W0)
    assert state.source.max() < n[2]
    # every position shows its holder's feature
    for b in range(B):
        for p in (0, 17, H0 * W0 - 1):
            r, c = divmod(p, W0)
            torch.testing.assert_close(fmap[b, :, r, c],
                                       out[b, 1 + state.source[b, p]])


def test_learned_scores_train_through_a_block_stack():
    blocks = make_blocks(num=6, seed=1).train()
    reducer = TPS(num_layers=6, blocks=[1, 3], score='learned',
                  embed_dims=32).train()
    x = torch.randn(2, 1 + 25, 32)
    out, state, counts = _run_stack(reducer, x, blocks, (5, 5))
    assert counts == [25, 17, 17, 12, 12, 12]
    loss = state.to_map(out[:, 1:]).square().mean() + out[:, 0].sum()
    loss = loss + reducer.losses()['loss_tps_ratio']
    loss.backward()
    for name in ('1', '3'):
        first = reducer.predictors[name].in_proj[1].weight.grad
        assert first is not None and first.abs().sum() > 0
    assert blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_proportional_attention_sizes_follow_the_source_map():
    blocks = make_blocks(num=6)
    reducer = TPS(num_layers=6, blocks=[1, 3], keep_ratio=.6,
                  prop_attn=True)
    x = torch.randn(2, 1 + 64, 32)
    with torch.no_grad():
        out, state, counts = _run_stack(reducer, x, blocks, (8, 8))
    assert counts == [64, 38, 38, 23, 23, 23]
    for b in range(2):
        held = torch.bincount(state.source[b], minlength=23).float()
        assert torch.equal(state.size[b], held)
    assert state.attn_bias(1).shape == (2, 1, 1, 24)
    # without prop_attn the sizes are not tracked
    plain = TPS(num_layers=6, blocks=[1, 3], keep_ratio=.6)
    with torch.no_grad():
        _, state, _ = _run_stack(plain, x, blocks, (8, 8))
    assert state.size is None and state.attn_bias(1) is None


def test_class_attention_score_uses_the_attention_bias():
    # three tokens with equal logits; the third stands for two patches, so
    # log(size) makes it the one the class token attends to most
    state = TokenState(grid_size=(1, 4), source=torch.tensor([[0, 1, 2, 2]]),
                       size=torch.tensor([[1., 1., 2.]]))
    x = torch.randn(1, 4, 6)
    tps = TPS(num_layers=1, blocks=[0], keep_ratio=.25)
    out, new = tps(0, x, one_hot_attention([[0., 0., 0.]]), state, 1)
    assert out.shape == (1, 2, 6)
    assert new.source.tolist() == [[0, 0, 0, 0]]
    assert new.size.tolist() == [[4.]]
    # without the bias, the tie is broken by position: token 0 is kept
    unbiased = TokenState(grid_size=(1, 4),
                          source=torch.tensor([[0, 1, 2, 2]]))
    out_u, _ = tps(0, x, one_hot_attention([[0., 0., 0.]]), unbiased, 1)
    assert not torch.allclose(out, out_u)


# ---------------------------------------------------- restoration oracle
def reference_stage(x, q, k, scale, holder, num_keep):
    """Loop-by-loop TPS stage on one image: x (P + N, C) with P = 1,
    q, k (h, P + N, d); ``holder[p]`` = current token of original patch p.
    """
    N = x.shape[0] - 1
    logits = torch.einsum('hd,htd->ht', q[:, 0].double(), k.double()) * scale
    score = logits.softmax(-1).mean(0)[1:].tolist()
    ranked = sorted(range(N), key=lambda t: -score[t])
    kept = sorted(ranked[:num_keep])
    pruned = ranked[num_keep:]
    tokens = x[1:].double()
    host_of, acc = {}, {j: [E, E * tokens[j]] for j in kept}
    for i in pruned:
        sims = [F.cosine_similarity(tokens[i], tokens[j], dim=0).item()
                for j in kept]
        best = max(range(len(kept)), key=lambda m: sims[m])
        host_of[i] = kept[best]
        w = math.exp(sims[best])
        acc[kept[best]][0] += w
        acc[kept[best]][1] = acc[kept[best]][1] + w * tokens[i]
    new_x = torch.stack([x[0].double()] +
                        [acc[j][1] / acc[j][0] for j in kept])
    # a kept token holds its own patches; a pruned one's go to its host
    new_holder = [
        kept.index(t) if t in acc else kept.index(host_of[t]) for t in holder
    ]
    return new_x, new_holder


def test_restoration_maps_every_patch_to_its_host_over_stages():
    torch.manual_seed(1)
    B, H0, W0, C = 2, 4, 6, 5
    tps = TPS(num_layers=3, blocks=[0, 1, 2], keep_ratio=[.75, .5, .6])
    counts = tps.num_kept(H0 * W0)
    assert counts == [18, 9, 5]
    state = TokenState.from_grid((H0, W0))
    holders = [list(range(H0 * W0)) for _ in range(B)]
    N = H0 * W0
    for stage in range(3):
        x = torch.randn(B, 1 + N, C)
        attn = random_attention(B, 1 + N, seed=stage)
        out, state = tps(stage, x, attn, state, 1)
        N = counts[stage]
        for b in range(B):
            ref_x, holders[b] = reference_stage(x[b], attn.q[b], attn.k[b],
                                                attn.scale, holders[b], N)
            torch.testing.assert_close(out[b].double(), ref_x)
            assert state.source[b].tolist() == holders[b]
    full = state.restore(out[:, 1:])
    for b in range(B):
        for p in range(H0 * W0):
            assert torch.equal(full[b, p], out[b, 1 + holders[b][p]])


def test_identical_tokens_restore_exactly():
    # each image is one repeated token: squeezing changes nothing, so the
    # restored map is the input map, bit for bit
    B, H0, W0, C = 2, 5, 4, 6
    fill = torch.randn(B, 1, C)
    x = torch.cat([torch.randn(B, 1, C), fill.expand(B, H0 * W0, C)], dim=1)
    tps = TPS(num_layers=2, blocks=[0, 1], keep_ratio=.5)
    state = TokenState.from_grid((H0, W0))
    for i in range(2):
        x, state = tps(i, x, random_attention(B, x.shape[1], seed=i), state,
                       1)
    assert x.shape == (B, 1 + 5, C)
    expected = fill.transpose(1, 2)[..., None].expand(B, C, H0, W0)
    assert torch.equal(state.to_map(x[:, 1:]), expected)
    assert TPS(num_layers=1, blocks=[0]).needs_class_token
    assert not TPS(num_layers=1, blocks=[0], score='learned',
                   embed_dims=4).needs_class_token


def test_batch_results_equal_single_image_results():
    torch.manual_seed(2)
    B, N, C = 4, 30, 8
    x = torch.randn(B, 1 + N, C)
    attn = random_attention(B, 1 + N, seed=5)
    tps = TPS(num_layers=1, blocks=[0], keep_ratio=.5)
    out, state = tps(0, x, attn, TokenState.from_grid((5, 6)), 1)
    for b in range(B):
        single_attn = AttentionInfo(attn.q[b:b + 1], attn.k[b:b + 1],
                                    attn.scale)
        out_b, state_b = tps(0, x[b:b + 1], single_attn,
                             TokenState.from_grid((5, 6)), 1)
        torch.testing.assert_close(out_b[0], out[b], rtol=1e-6, atol=1e-6)
        assert torch.equal(state_b.source[0], state.source[b])


def test_batch_equals_single_through_a_block_stack():
    blocks = make_blocks(num=6, seed=3)
    reducer = TPS(num_layers=6, blocks=[1, 4], keep_ratio=.5)
    x = torch.randn(3, 1 + 36, 32)
    with torch.no_grad():
        out, state, _ = _run_stack(reducer, x, blocks, (6, 6))
        for b in range(3):
            out_b, state_b, _ = _run_stack(reducer, x[b:b + 1], blocks,
                                           (6, 6))
            torch.testing.assert_close(out_b[0], out[b], rtol=1e-5,
                                       atol=1e-5)
            assert torch.equal(state_b.source[0], state.source[b])


# ------------------------------------------------------------ learned scores
class FixedLogits(nn.Module):
    """Logits so far apart that Gumbel noise cannot reorder them."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1000.))

    def forward(self, x):
        return self.scale * x[..., 0]


def test_learned_gradients_reach_the_predictor_in_training():
    torch.manual_seed(0)
    tps = TPS(num_layers=2, blocks=[1], keep_ratio=.5, score='learned',
              embed_dims=16, predictor_hidden=8).train()
    x = torch.randn(2, 1 + 20, 16, requires_grad=True)
    out, state = tps(1, x, None, TokenState.from_grid((4, 5)), 1)
    assert out.shape == (2, 11, 16)
    # the task loss alone trains the predictor (straight-through)
    (out**2).sum().backward(retain_graph=True)
    grads = [p.grad for p in tps.predictors['1'].parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    # and so does the keep-ratio loss
    tps.zero_grad()
    losses = tps.losses()
    assert set(losses) == {'loss_tps_ratio'}
    assert losses['loss_tps_ratio'].ndim == 0
    losses['loss_tps_ratio'].backward()
    assert tps.predictors['1'].out_proj[-1].weight.grad.abs().sum() > 0


def test_learned_training_forward_equals_the_squeeze_in_value():
    tps = TPS(num_layers=1, blocks=[0], keep_ratio=.4, score='learned',
              embed_dims=4)
    tps.predictors['0'] = FixedLogits()
    x = torch.randn(2, 1 + 10, 4)
    state = TokenState.from_grid((2, 5))
    out_train, st_train = tps.train()(0, x, None, state, 1)
    out_eval, st_eval = tps.eval()(0, x, None, state, 1)
    torch.testing.assert_close(out_train, out_eval, rtol=0, atol=0)
    assert torch.equal(st_train.source, st_eval.source)
    out_train.sum().backward()
    assert tps.predictors['0'].scale.grad != 0


def test_learned_inference_is_deterministic_top_k():
    torch.manual_seed(3)
    tps = TPS(num_layers=1, blocks=[0], keep_ratio=.5, score='learned',
              embed_dims=8).eval()
    x = torch.randn(2, 1 + 12, 8)
    state = TokenState.from_grid((3, 4))
    with torch.no_grad():
        out1, s1 = tps(0, x, None, state, 1)
        out2, s2 = tps(0, x, None, state, 1)
        logits = tps.predictors['0'](x[:, 1:])
    assert torch.equal(out1, out2) and torch.equal(s1.source, s2.source)
    keep = logits.topk(6, dim=1).indices.sort(dim=1).values
    mask = torch.ones_like(logits, dtype=torch.bool).scatter_(1, keep, False)
    prune = mask.nonzero()[:, 1].view(2, 6)
    kept, host = squeeze_tokens(x[:, 1:], keep, prune)
    # the same sums, added in another order
    torch.testing.assert_close(out1[:, 1:], kept)
    for b in range(2):
        assert s1.source[b, keep[b]].tolist() == list(range(6))
        assert torch.equal(s1.source[b, prune[b]], host[b])
    torch.testing.assert_close(out1[:, 0], x[:, 0], rtol=0, atol=0)


def test_training_with_noise_varies_but_keeps_the_count():
    torch.manual_seed(4)
    tps = TPS(num_layers=1, blocks=[0], keep_ratio=.5, score='learned',
              embed_dims=8).train()
    x = torch.randn(1, 1 + 40, 8)
    sources = set()
    for _ in range(5):
        out, state = tps(0, x, None, TokenState.from_grid((5, 8)), 1)
        assert out.shape == (1, 21, 8)
        sources.add(tuple(state.source[0].tolist()))
    assert len(sources) > 1


def test_losses_reset_each_forward_and_empty_for_attention_scores():
    tps = TPS(num_layers=4, blocks=[1, 2], keep_ratio=.5, score='learned',
              embed_dims=8).train()
    assert tps.losses() == {}
    state = TokenState.from_grid((4, 4))
    x = torch.randn(2, 17, 8)
    x, state = tps(1, x, None, state, 1)
    first = tps.losses()['loss_tps_ratio']
    x, state = tps(2, x, None, state, 1)
    both = tps.losses()['loss_tps_ratio']
    assert both >= first
    tps(1, torch.randn(2, 17, 8), None, TokenState.from_grid((4, 4)), 1)
    assert len(tps._ratio_losses) == 1
    assert TPS(num_layers=12).losses() == {}


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize('cfg, match', [
    (dict(keep_ratio=0.), r'keep_ratio=0\.0 is outside \(0, 1\]'),
    (dict(keep_ratio=1.5), r'keep_ratio=1\.5'),
    (dict(keep_ratio=[.7, -.1, .7]), r'keep_ratio\[1\]=-0\.1 \(block 6\)'),
    (dict(keep_ratio=[.7, .7]), r'keep_ratio has 2 entries'),
    (dict(keep_ratio=True), r'keep_ratio=True'),
    (dict(blocks=[3, 12]), r'blocks\[1\]=12 is out of range for 12'),
    (dict(blocks=[-1]), r'blocks\[0\]=-1 is out of range'),
    (dict(blocks=[3, 6, 3]), r'blocks\[2\]=3 is a duplicate'),
    (dict(blocks=[6, 3]), r'must be increasing'),
    (dict(blocks=[]), r'blocks is empty'),
    (dict(score='random'), r'unknown score "random"'),
    (dict(score='learned'), r'needs embed_dims'),
    (dict(score='learned', embed_dims=8, predictor_hidden=7),
     r'predictor_hidden must be an even'),
    (dict(tau=0.), r'tau must be > 0'),
    (dict(num_layers=6), r"\['num_layers'\] come from the ViT"),
])
def test_bad_config_raises_naming_the_entry(cfg, match):
    cfg = dict(cfg)
    embed_dims = cfg.pop('embed_dims', None)
    with pytest.raises(ValueError, match=match):
        build_token_reducer(dict(type='TPS', **cfg), num_layers=12,
                            embed_dims=embed_dims)


def test_bad_forward_input_raises():
    tps = TPS(num_layers=2, blocks=[0])
    x = torch.randn(1, 1 + 4, 4)
    with pytest.raises(ValueError, match='not in block 1'):
        tps(1, x, one_hot_attention([[1., 2., 3., 4.]]),
            TokenState.from_grid((2, 2)), 1)
    padded = TokenState.from_grid((2, 2), valid_shape=[(1, 2)])
    with pytest.raises(NotImplementedError, match='padded batches'):
        tps(0, x, one_hot_attention([[1., 2., 3., 4.]]), padded, 1)
    with pytest.raises(ValueError, match='no prefix token'):
        tps(0, x[:, 1:], one_hot_attention([[1., 2., 3., 4.]], 0),
            TokenState.from_grid((2, 2)), 0)
    with pytest.raises(ValueError, match='identity source map'):
        tps(0, x, one_hot_attention([[1., 2., 3., 4.]]),
            TokenState.from_grid((3, 3)), 1)


def test_an_untaken_ratio_loss_warns_at_the_next_training_forward():
    tps = TPS(num_layers=2, blocks=[1], keep_ratio=.5, score='learned',
              embed_dims=16, predictor_hidden=8)
    x = torch.randn(2, 1 + 20, 16)

    def forward():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            tps(1, x, None, TokenState.from_grid((4, 5)), 1)
        return [w for w in caught if 'keep-ratio loss' in str(w.message)]

    tps.train()
    assert not forward()
    assert len(forward()) == 1  # the first forward's loss was never taken
    tps.losses()
    assert not forward()
    tps.eval()  # evaluation records no debt, and never warns
    assert not forward() and not forward()
    tps.train()
    assert len(forward()) == 1  # the debt of the last training forward
