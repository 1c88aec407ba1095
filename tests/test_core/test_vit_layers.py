import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block as TimmBlock

from cait_mm.analysis.op_count import count_ops
from cait_mm.core import Attention, Block
from cait_mm.core.token_state import padding_bias
from cait_mm.core.vit_layers import fold_bias


def _timm_pair(dim=48, heads=4):
    torch.manual_seed(0)
    ref = TimmBlock(dim, heads, mlp_ratio=4., qkv_bias=True).eval()
    ours = Block(dim, heads, mlp_hidden=4 * dim).eval()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def test_block_matches_timm_block_and_has_its_weight_names():
    ref, ours = _timm_pair()
    assert set(ours.state_dict()) == set(ref.state_dict())
    x = torch.randn(2, 17, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_a_dropout_of_zero_dispatches_nothing_and_one_above_drops():
    """A dropout of 0 (every preset's, all of them at inference) is no
    operator; a rate above 0 still drops in training, not in eval."""
    x = torch.randn(2, 17, 48)
    plain = Block(48, 4, mlp_hidden=96).eval()
    assert 'aten::dropout' not in count_ops(lambda: plain(x)).by_name
    dropping = Block(48, 4, mlp_hidden=96, drop=0.5)
    assert count_ops(lambda: dropping.eval()(x)).by_name[
        'aten::dropout'] == 3
    torch.manual_seed(0)
    trained = dropping.train()(x)
    with torch.no_grad():
        assert not torch.allclose(trained, dropping.eval()(x))


def test_block_halves_compose_to_the_block():
    _, ours = _timm_pair()
    x = torch.randn(2, 10, 48)
    with torch.no_grad():
        mid, info = ours.forward_attn(x)
        assert info.q.shape == info.k.shape == (2, 4, 10, 12)
        assert info.scale == 12**-0.5
        torch.testing.assert_close(ours.forward_mlp(mid), ours(x))


def test_attention_bias_is_added_to_logits():
    attn = Attention(32, 4).eval()
    x = torch.randn(1, 6, 32)
    bias = torch.zeros(1, 1, 1, 6)
    bias[..., 2] = -float('inf')  # token 2 can no longer be attended to
    with torch.no_grad():
        out, _ = attn(x, bias)
        x2 = x.clone()
        x2[:, 2] = 100.  # so changing it must not change the others' output
        out2, _ = attn(x2, bias)
    keep = [0, 1, 3, 4, 5]
    torch.testing.assert_close(out[:, keep], out2[:, keep])


def test_pruned_head_widths_shape_the_projections():
    attn = Attention(64, 4, qk_dim=6, v_dim=10)
    assert attn.qkv.out_features == 4 * (6 + 6 + 10)
    assert attn.proj.in_features == 40
    # the softmax scale is the unpruned head width's
    assert attn.scale == pytest.approx(16**-0.5)
    out, info = attn(torch.randn(3, 5, 64))
    assert out.shape == (3, 5, 64) and info.k.shape == (3, 4, 5, 6)


def test_dim_must_split_into_heads():
    with pytest.raises(ValueError, match='not divisible by num_heads'):
        Attention(30, 4)


@pytest.mark.parametrize('dims', [(12, 12), (6, 10), (16, 8)])
def test_a_folded_bias_equals_the_bias_as_a_mask(dims):
    """q' = [q, 1], k' = [k, bias / scale], v' = [v, 0] give the masked
    attention's output: sizes (log) and padding (-inf), pruned widths."""
    qk_dim, v_dim = dims
    torch.manual_seed(0)
    B, h, N, scale = 2, 3, 9, 0.3
    q, k = torch.randn(2, B, h, N, qk_dim, dtype=torch.float64)
    v = torch.randn(B, h, N, v_dim, dtype=torch.float64)
    bias = torch.rand(B, 1, 1, N, dtype=torch.float64).mul(4).add(1).log()
    bias[1, ..., 4:6] = -float('inf')
    expected = F.scaled_dot_product_attention(q, k, v, bias, scale=scale)
    q2, k2, v2 = fold_bias(q, k, v, bias, scale)
    assert q2.shape[-1] % 8 == 0 and q2.shape[-1] > max(dims)
    assert q2.shape[-1] == k2.shape[-1] == v2.shape[-1]
    out = F.scaled_dot_product_attention(q2, k2, v2, scale=scale)
    torch.testing.assert_close(out[..., :v_dim], expected)
    assert not out[..., v_dim:].any()


def test_attention_with_a_folded_bias_equals_the_masked_one():
    attn = Attention(48, 4, qk_dim=8, v_dim=12).eval()
    x = torch.randn(2, 7, 48)
    bias = torch.randn(2, 1, 1, 7).abs().log()
    with torch.no_grad():
        masked, info = attn(x, bias)
        folded, info2 = attn(x, bias, fold=True)
    torch.testing.assert_close(folded, masked, rtol=1e-5, atol=1e-6)
    # reducers see the unfolded queries and keys
    assert info2.k.shape == (2, 4, 7, 8) and torch.equal(info2.k, info.k)


def _tiled_attention(q, k, v, scale, tile):
    """Attention as the fused CUDA kernels compute it: an online softmax
    over key tiles (running max, rescaled sums), with no masking of its
    own. A tile whose logits are all ``-inf`` gives ``-inf - (-inf)``."""
    m = torch.full(q.shape[:-1] + (1,), -float('inf'), dtype=q.dtype)
    denom = torch.zeros_like(m)
    out = torch.zeros(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    for start in range(0, k.shape[-2], tile):
        s = scale * q @ k[..., start:start + tile, :].transpose(-2, -1)
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        p = (s - m_new).exp()
        rescale = (m - m_new).exp()
        denom = denom * rescale + p.sum(-1, keepdim=True)
        out = out * rescale + p @ v[..., start:start + tile, :]
        m = m_new
    return out / denom


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16,
                                   torch.float32])
def test_padding_keys_folded_stay_finite_in_tiled_kernels(dtype):
    """Padding keys first (a whole tile of them): with ``-inf`` the folded
    keys give NaN in a tiled kernel; with :func:`padding_bias` the output
    is attention over the content keys alone."""
    torch.manual_seed(0)
    B, h, N, d, scale, pad = 1, 2, 16, 8, 8 ** -0.5, 8
    q, k = torch.randn(2, B, h, N, d)
    v = torch.randn(B, h, N, d)
    content = F.scaled_dot_product_attention(q, k[..., pad:, :],
                                             v[..., pad:, :], scale=scale)

    def tiled(fill):
        bias = torch.zeros(B, 1, 1, N)
        bias[..., :pad] = fill
        q2, k2, v2 = fold_bias(q.to(dtype), k.to(dtype), v.to(dtype),
                               bias.to(dtype), scale)
        assert torch.isfinite(k2).all() or fill == -float('inf')
        return _tiled_attention(q2.float(), k2.float(), v2.float(), scale,
                                tile=pad)[..., :d]

    assert tiled(-float('inf')).isnan().all()
    got = tiled(padding_bias(dtype))
    tol = dict(rtol=0, atol=1e-6) if dtype == torch.float32 else dict(
        rtol=0, atol=3e-2)
    torch.testing.assert_close(got, content, **tol)
