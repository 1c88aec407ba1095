import torch

from cait_mm.core import TokenState


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
