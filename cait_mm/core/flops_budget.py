"""Analytic FLOPs of a ViT's blocks when a token reducer shrinks them: what
FLOPs targets and equal-FLOPs comparisons between reducers are set with.

A block on ``N`` tokens costs ``N * C^2 * (4 + 2 * mlp_ratio)`` multiply-adds
in its linear layers and ``2 * N^2 * C`` in attention; a reducer acts after
the attention of a block, so that block's MLP already runs on the reduced
tokens. The class token counts; the reducers' own bookkeeping does not
(``cait_mm.analysis.count_flops`` counts that, on a built model).
"""
from typing import Sequence, Tuple


def block_flops_fraction(counts: Sequence[int],
                         grid: Tuple[int, int],
                         embed_dims: int,
                         mlp_ratio: float = 4.,
                         num_prefix: int = 1) -> float:
    """Multiply-adds of the blocks as a fraction of the unreduced ViT's.

    Args:
        counts: Patch tokens after each block (``num_layers`` entries), as
            :meth:`~cait_mm.core.token_reducer.TokenReducer.token_counts`
            gives them.
        grid: ``(H0, W0)`` patches of the input.
        embed_dims: Token width ``C``.
        mlp_ratio: MLP hidden width over ``C``.
        num_prefix: Tokens ahead of the patches (the class token).
    """
    C = embed_dims

    def cost(n_attn: int, n_mlp: int) -> float:
        return (n_attn * 4 * C * C + 2 * n_attn**2 * C +
                n_mlp * 2 * mlp_ratio * C * C)

    n0 = grid[0] * grid[1]
    before = [n0] + list(counts[:-1])
    reduced = sum(
        cost(num_prefix + a, num_prefix + m) for a, m in zip(before, counts))
    return reduced / (len(counts) * cost(num_prefix + n0, num_prefix + n0))
