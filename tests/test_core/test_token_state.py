import pytest
import torch
import torch.nn.functional as F

from cait_mm.analysis.op_count import count_ops
from cait_mm.core import TokenState
from cait_mm.core.token_state import BIAS_ALIGNMENT


def test_unreduced_state_is_the_identity():
    state = TokenState.from_grid((3, 4))
    x = torch.randn(2, 12, 5)
    assert state.attn_bias(1) is None
    assert state.restore(x) is x
    fmap = state.to_map(x)
    assert fmap.shape == (2, 5, 3, 4)
    # row-major: token r * W + c sits at (r, c)
    torch.testing.assert_close(fmap[:, :, 1, 2], x[:, 1 * 4 + 2])


def test_restore_gathers_each_position_from_its_token():
    source = torch.tensor([[0, 0, 1, 2], [2, 1, 1, 0]])
    state = TokenState(grid_size=(2, 2), shape=None, source=source)
    x = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    full = state.restore(x)
    for b in range(2):
        for p in range(4):
            torch.testing.assert_close(full[b, p], x[b, source[b, p]])


def test_attn_bias_is_log_size_with_zero_for_prefix_tokens():
    size = torch.tensor([[1., 2., 4.]])
    state = TokenState(grid_size=(1, 7), size=size)
    bias = state.attn_bias(num_prefix_tokens=1)
    assert bias.shape == (1, 1, 1, 4)
    # class token (size 1) first, then the patch tokens
    expected = torch.tensor([1., 1., 2., 4.]).log()
    torch.testing.assert_close(bias.flatten(), expected)


@pytest.mark.parametrize('num_prefix', [0, 1])
def test_an_aligned_bias_is_the_same_bias_in_rows_of_16(num_prefix):
    """What CUDA's mask-taking kernels read without a copy: rows of a
    multiple of 16 elements, a view of the same values; SDPA gives the same
    output with it."""
    size = torch.tensor([[1., 2., 4.], [2., 2., 1.]])
    plain = TokenState(grid_size=(1, 9), size=size).attn_bias(num_prefix)
    state = TokenState(grid_size=(1, 9), size=size)
    aligned = state.attn_bias(num_prefix, aligned=True)
    assert aligned.shape == plain.shape == (2, 1, 1, 3 + num_prefix)
    assert aligned.stride(0) % BIAS_ALIGNMENT == 0 and aligned.stride(-1) == 1
    assert torch.equal(aligned, plain)
    q, k, v = torch.randn(3, 2, 2, 3 + num_prefix, 8).unbind(0)
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=aligned),
        F.scaled_dot_product_attention(q, k, v, attn_mask=plain))
    # built once per reduction: an unaligned request takes the aligned bias
    assert state.attn_bias(num_prefix) is aligned
    # and an aligned request is not served an unaligned one
    state = TokenState(grid_size=(1, 9), size=size)
    first = state.attn_bias(num_prefix)
    assert state.attn_bias(num_prefix,
                           aligned=True).stride(0) == BIAS_ALIGNMENT
    assert first.stride(0) == 3 + num_prefix
    # warm (the zeros cached): the log and one cat, as without alignment
    state = TokenState(grid_size=(1, 9), size=size)
    ops = count_ops(lambda: state.attn_bias(num_prefix, aligned=True))
    assert ops.kernels_by_name == {'aten::log': 1, 'aten::cat': 1}
