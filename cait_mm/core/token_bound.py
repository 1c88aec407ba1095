"""The speed a token schedule could reach if reducing tokens cost nothing.

:class:`TokenCountBound` is a token reducer for benchmarks: it takes another
reducer's config and runs the blocks at exactly that reducer's token counts,
but each reduction only keeps the first tokens (one copy of the kept rows,
the least any reduction writes), with nothing scored, merged or weighed and
no sizes (so no attention bias). Timed against the dense model it answers
what the shorter sequences alone give on a machine (short matrix products
on a CPU, kernel launches on a GPU); timed against the reducer it is that
reducer's bookkeeping. Its outputs have the reducer's shapes, not its
values: a bound, not a model.

Plain PyTorch like the rest of the core, registered with the other
reducers (``tools/analysis_tools/benchmark.py --bound`` uses it).
"""
from dataclasses import replace
from typing import Dict, List, Optional, Set, Tuple

import torch
from torch import Tensor

from .batch_rows import shape_cached
from .token_reducer import (TokenReducer, build_token_reducer,
                            register_token_reducer, saved_config)
from .token_state import TokenState
from .vit_layers import AttentionInfo


@register_token_reducer
class TokenCountBound(TokenReducer):
    """Keep the first tokens, at the counts of ``reducer``.

    Args:
        num_layers (int): Blocks of the ViT.
        reducer (dict): The config of the reducer whose token counts
            (:meth:`~cait_mm.core.TokenReducer.token_counts`) and blocks
            this one follows, e.g. ``dict(type='ATME', schedule='deit-s')``;
            built (as :attr:`reference`) but never run.
        embed_dims (int, optional): Token width, passed to ``reducer``.
    """

    def __init__(self,
                 num_layers: int,
                 reducer: Dict,
                 embed_dims: Optional[int] = None):
        super().__init__(num_layers, embed_dims)
        if not isinstance(reducer, dict) or \
                reducer.get('type') == type(self).__name__:
            raise ValueError('TokenCountBound follows the config of another '
                             f'token reducer, got {reducer!r}')
        # how a machine runs the reducer (ATME's kernel) is no part of it
        self.reducer = saved_config(dict(reducer))
        #: The reducer whose counts are followed (its weights unused).
        self.reference = build_token_reducer(self.reducer, num_layers,
                                             embed_dims)
        self._counts: Dict[Tuple[int, int], List[int]] = {}

    @property
    def blocks(self) -> Set[int]:
        return set(self.reference.blocks)

    def token_counts(self, grid: Tuple[int, int]) -> List[int]:
        return self.reference.token_counts(grid)

    def settings(self) -> Dict:
        return dict(reducer=dict(self.reducer))

    def forward(self, block_index: int, x: Tensor, attn: AttentionInfo,
                state: TokenState,
                num_prefix: int) -> Tuple[Tensor, TokenState]:
        """``(B, P + N, C)`` -> its first ``P + N'`` tokens, ``N'`` the
        reference's count after this block; every original patch maps to
        the last kept token beyond ``N'`` (a source map built once per
        shape)."""
        if state.valid_shape is not None:
            raise NotImplementedError(
                'TokenCountBound does not support padded batches (a bound '
                "measured on unpadded ones): a padded batch's token counts "
                'are per image')
        # ints: a tracer (FLOP counting) hands out shapes as tensors
        grid = tuple(int(n) for n in state.grid_size)
        if grid not in self._counts:
            self._counts[grid] = self.token_counts(grid)
        B, T = (int(n) for n in x.shape[:2])
        keep = min(self._counts[grid][block_index], T - num_prefix)
        if keep == T - num_prefix:
            return x, state
        patches = grid[0] * grid[1]
        source = shape_cached(
            ('token_count_bound', B, patches, keep, x.device),
            lambda: torch.arange(patches, device=x.device).clamp_max(
                keep - 1).expand(B, patches))
        return x[:, :num_prefix + keep].contiguous(), replace(
            state, shape=None, size=None, source=source)
