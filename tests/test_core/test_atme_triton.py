"""ATME's Triton merge (cait_mm.core.atme_triton) against the reference.

The kernels run on CUDA tensors, or on CPU tensors under Triton's
interpreter, which must be switched on before Triton is imported: so on a
machine without a GPU these tests run in a process of their own with
``TRITON_INTERPRET=1`` (tests/test_core/test_atme_triton_cpu.py
starts it; ``make test`` runs both), and skip in the main one.
"""
import os

import pytest
import torch

from cait_mm.core import atme_triton
from cait_mm.core.atme import ATME, merge_grid, merge_tables, num_merges
from cait_mm.core.token_state import TokenState
from cait_mm.models import CAITViT

INTERPRETED = os.environ.get('TRITON_INTERPRET') == '1'
CUDA = torch.cuda.is_available()
DEVICE = 'cuda' if CUDA else 'cpu'
pytestmark = pytest.mark.skipif(
    not atme_triton.available() or not (CUDA or INTERPRETED),
    reason='needs a CUDA device, or TRITON_INTERPRET=1 (its own process)')

ARCH = dict(embed_dims=32, num_layers=6, num_heads=2, mlp_ratio=2.)
# three merges of a 8x10 grid: h, v, h (sizes tracked from the second)
SCHEDULE = [(1, 'h', 0.5), (2, 'v', 0.5), (3, 'h', 1.0)]


def _inputs(grid, num_prefix, sized, ties, seed=0):
    torch.manual_seed(seed)
    B, h, d, C = 2, 3, 8, 16
    H, W = grid
    T = num_prefix + H * W
    x = torch.randn(B, T, C, device=DEVICE)
    keys = torch.randn(B, h, T, d, device=DEVICE)
    if ties:  # a flat region: every pair in the top rows ties exactly
        keys[:, :, num_prefix:num_prefix + 2 * W] = 1.
    state = TokenState.from_grid(grid)
    if sized:
        state.size = torch.randint(1, 5, (B, H * W),
                                   device=DEVICE).to(x.dtype)
        state.source = torch.randint(0, H * W, (B, 3 * H * W),
                                     device=DEVICE)
    return x, keys, state


@pytest.mark.parametrize('grid', [(6, 8), (7, 5)])
@pytest.mark.parametrize('vertical', [False, True])
@pytest.mark.parametrize('line_mode', [False, True])
@pytest.mark.parametrize('sized, num_prefix, ties', [
    (False, 1, False), (True, 1, True), (True, 0, False)])
def test_the_merge_equals_the_reference(grid, vertical, line_mode, sized,
                                        num_prefix, ties):
    x, keys, state = _inputs(grid, num_prefix, sized, ties)
    H, W = grid
    total = num_merges(0.5, H if vertical else W)
    tables = merge_tables(2, grid, num_prefix, vertical, total, x.device)
    expected, ref = merge_grid(x.clone(), keys, state, num_prefix, vertical,
                               total, line_mode, tables)
    before = x.clone()
    got, new = atme_triton.merge_grid_triton(x, keys, state, num_prefix,
                                             vertical, total, line_mode)
    assert torch.equal(x, before)  # unlike the reference, x is kept
    assert new.shape == ref.shape and new.grid_size == ref.grid_size
    # the same pairs: sizes and source map exactly
    assert torch.equal(new.size, ref.size)
    assert torch.equal(new.source, ref.source)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_the_gradient_equals_the_reference():
    x, keys, state = _inputs((6, 8), 1, True, False)
    total = num_merges(0.5, 8)
    tables = merge_tables(2, (6, 8), 1, False, total, x.device)
    grad = torch.randn(2, 1 + 6 * (8 - total), 16, device=DEVICE)
    a = x.clone().requires_grad_()
    out, _ = merge_grid(a.clone(), keys, state, 1, False, total, False,
                        tables)
    (out * grad).sum().backward()
    b = x.clone().requires_grad_()
    out, _ = atme_triton.merge_grid_triton(b, keys, state, 1, False, total,
                                           False)
    (out * grad).sum().backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-6)


def _pair(granularity):
    torch.manual_seed(0)
    models = [CAITViT(arch=ARCH, img_size=(128, 160), out_indices=(1, 3, 5),
                      drop_path_rate=0., token_reducer=dict(
                          type='ATME', schedule=SCHEDULE,
                          granularity=granularity, kernel=kernel))
              for kernel in ('torch', 'triton')]
    models[1].load_state_dict(models[0].state_dict())
    return [m.to(DEVICE) for m in models]


@pytest.mark.parametrize('granularity', ['token', 'line'])
def test_a_vit_gives_the_same_maps_and_gradients(granularity):
    reference, triton_model = _pair(granularity)
    assert isinstance(triton_model.token_reducer, ATME)
    assert triton_model.token_reducer.kernel == 'triton'
    # the kernel is not part of the model: checkpoints rebuild the same
    assert triton_model.token_reducer.settings() == \
        reference.token_reducer.settings()
    x = torch.randn(2, 3, 128, 160, device=DEVICE)
    outs = [m(x) for m in (reference, triton_model)]
    for a, b in zip(*outs):
        assert a.shape == b.shape == (2, 32, 8, 10)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    for m, out in zip((reference, triton_model), outs):
        sum(o.square().mean() for o in out).backward()
    for (name, p), q in zip(reference.named_parameters(),
                            triton_model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5,
                                   msg=name)


def test_compile_traces_the_op_in_one_graph():
    """Registered with torch.library and a fake implementation: dynamo
    traces the op (fullgraph) and the compiled forward runs it."""
    _, model = _pair('token')
    model.eval()
    x = torch.randn(1, 3, 128, 160, device=DEVICE)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, fullgraph=True, dynamic=False,
                                 backend='aot_eager')
        got = compiled(x)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_padded_batch_takes_the_reference_merge():
    """Per-image counts (Mask R-CNN's padded batches) are the reference's
    job: the same maps with either kernel."""
    reference, triton_model = _pair('token')
    x = torch.randn(2, 3, 128, 160, device=DEVICE)
    x[1, :, 96:] = 0
    sizes = [(128, 160), (96, 160)]
    with torch.no_grad():
        outs = [m.eval()(x, valid_sizes=sizes)
                for m in (reference, triton_model)]
    for a, b in zip(*outs):
        assert torch.equal(a, b)
