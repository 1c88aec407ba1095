"""EViT: keep the attentive tokens, fuse the rest (Liang et al., ICLR 2022),
written from the paper's description, with a source map for dense
restoration.

At chosen blocks, after the attention, the patch tokens the class token
attends to most are kept and the others are fused into one extra token,
weighted by the class token's attention to them. The fused token is a token
like the others afterwards (a later stage may fuse it again). Every original
patch points at the token that holds it (its own, or the fused one), so the
full map is restored by one gather, as for the other reducers.
"""
import math
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
from torch import Tensor

from .batch_rows import batch_select
from .token_reducer import (TokenReducer, class_attention,
                            register_token_reducer)
from .token_state import TokenState
from .vit_layers import AttentionInfo

# a product of ratios (0.7 * 10 = 7.000000000000001) must not round up
_COUNT_EPS = 1e-6


@register_token_reducer
class EViT(TokenReducer):
    """Top-k by class-token attention, the rest fused into one token.

    Args:
        num_layers (int): Blocks of the ViT.
        embed_dims (int, optional): Token width (unused: no weights).
        blocks (Sequence[int]): Increasing block indices; EViT's are the
            4th, 7th and 10th of 12, ``(3, 6, 9)``.
        keep_ratio (float): Fraction of the patch tokens entering a stage
            that it keeps, ``ceil(keep_ratio * N)`` (the fused token of an
            earlier stage counts as one of the ``N``), plus the new fused
            token.
        prop_attn (bool): Track token sizes (patches per token) so that the
            backbone adds ``log(size)`` to the attention logits. EViT does
            not, hence ``False``.

    The fused token is the attention-weighted *mean* of the tokens it
    replaces (EViT sums the attention-weighted tokens; dividing by their
    total attention keeps the fused token on the scale of the others, which
    matters when the dense map is restored from it).
    """
    flops_knobs = dict(keep_ratio=('float', 0., 1.))

    def __init__(self,
                 num_layers: int,
                 embed_dims: Optional[int] = None,
                 blocks: Sequence[int] = (3, 6, 9),
                 keep_ratio: Union[float, int] = 0.7,
                 prop_attn: bool = False):
        super().__init__(num_layers, embed_dims)
        blocks = tuple(blocks)
        if not blocks or list(blocks) != sorted(set(blocks)) or not all(
                isinstance(b, int) and 0 <= b < num_layers for b in blocks):
            raise ValueError(f'EViT: blocks {list(blocks)} must be increasing '
                             f'indices in [0, {num_layers - 1}]')
        if isinstance(keep_ratio, bool) or not isinstance(
                keep_ratio, (int, float)) or not 0 < keep_ratio <= 1:
            raise ValueError(f'EViT: keep_ratio={keep_ratio!r} is outside '
                             '(0, 1]')
        self.at = blocks
        self.keep_ratio = float(keep_ratio)
        self.prop_attn = prop_attn

    @property
    def blocks(self) -> Set[int]:
        return set(self.at)

    @property
    def needs_class_token(self) -> bool:
        return True

    def settings(self) -> Dict:
        return dict(blocks=list(self.at), keep_ratio=self.keep_ratio,
                    prop_attn=self.prop_attn)

    def num_kept(self, num_tokens: int) -> int:
        """Tokens one stage keeps of ``num_tokens`` (the fused one aside)."""
        return max(1, math.ceil(self.keep_ratio * num_tokens - _COUNT_EPS))

    def token_counts(self, grid: Tuple[int, int]) -> List[int]:
        n, counts = grid[0] * grid[1], []
        for block in range(self.num_layers):
            if block in self.at and self.num_kept(n) < n:
                n = self.num_kept(n) + 1
            counts.append(n)
        return counts

    def forward(self, block_index: int, x: Tensor, attn: AttentionInfo,
                state: TokenState,
                num_prefix: int) -> Tuple[Tensor, TokenState]:
        """Keep ``K`` patch tokens of ``x (B, P + N, C)`` and fuse the rest:
        ``(B, P + K + 1, C)``, the kept ones in their order, then the fused
        one; see :class:`TokenReducer`."""
        if state.valid_shape is not None:
            raise NotImplementedError(
                'EViT does not support padded batches: its token counts are '
                'per batch, not per image. Feed images of one size, or use '
                'ATME for padded detection inputs')
        if num_prefix < 1:
            raise ValueError('EViT ranks tokens by the class token\'s '
                             'attention, but the ViT has no class token')
        P = num_prefix
        B, T, _ = x.shape
        N = T - P
        K = self.num_kept(N)
        if K >= N:
            return x, state
        score = class_attention(attn, state, P)  # (B, N), no gradient
        # stable: equal scores keep the earlier token, in any batch
        order = score.argsort(dim=1, descending=True, stable=True)
        keep = order[:, :K].sort(dim=1).values
        fuse = order[:, K:]
        weight = score.gather(1, fuse)
        weight = (weight / weight.sum(1, keepdim=True)).to(x.dtype)
        fused = (batch_select(x, fuse + P) * weight[..., None]).sum(
            1, keepdim=True)
        out = torch.cat([x[:, :P], batch_select(x, keep + P), fused], dim=1)

        moved = torch.full((B, N), K, dtype=torch.long, device=x.device)
        moved.scatter_(1, keep, torch.arange(K, device=x.device).expand(B, K))
        source = moved if state.source is None else moved.gather(
            1, state.source)
        size = state.size
        if size is None and self.prop_attn:
            size = x.new_ones(B, N, dtype=torch.float32)
        if size is not None:
            size = torch.cat([size.gather(1, keep),
                              size.gather(1, fuse).sum(1, keepdim=True)], 1)
        return out, TokenState(
            grid_size=state.grid_size, shape=None, size=size, source=source)
