"""Book-keeping for patch tokens that token reducers merge or prune."""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor


@dataclass
class TokenState:
    """Where the current patch tokens came from.

    The class token is not part of the state: reducers never touch it.

    Attributes:
        grid_size (tuple): Original patch grid ``(H0, W0)``.
        shape (tuple, optional): Current ``(H, W)`` while the tokens still
            form a regular grid (ATME keeps one); ``None`` once they do not
            (TPS).
        size (Tensor, optional): ``(B, N)``, how many original patches each
            current token stands for; ``None`` while every size is 1.
        source (Tensor, optional): ``(B, H0 * W0)`` long, the index of the
            current token that holds each original patch; ``None`` while the
            map is the identity.
    """
    grid_size: Tuple[int, int]
    shape: Optional[Tuple[int, int]] = None
    size: Optional[Tensor] = None
    source: Optional[Tensor] = None

    @classmethod
    def from_grid(cls, grid_size: Tuple[int, int]) -> 'TokenState':
        """State of an unreduced ``(H0, W0)`` grid."""
        return cls(grid_size=tuple(grid_size), shape=tuple(grid_size))

    def attn_bias(self, num_prefix_tokens: int) -> Optional[Tensor]:
        """Proportional-attention bias ``(B, 1, 1, P + N)``: ``log(size)``.

        Prefix tokens (class token) have size 1, hence bias 0. Returns
        ``None`` while all sizes are 1, so attention stays unbiased (and
        bit-identical to a plain ViT).
        """
        if self.size is None:
            return None
        log_size = self.size.log()
        prefix = log_size.new_zeros(log_size.shape[0], num_prefix_tokens)
        return torch.cat([prefix, log_size], dim=1)[:, None, None, :]

    def restore(self, x: Tensor) -> Tensor:
        """Put reduced tokens back on the original grid.

        Args:
            x (Tensor): Current patch tokens ``(B, N, C)``.

        Returns:
            Tensor: ``(B, H0 * W0, C)``; position ``p`` holds the token that
            absorbed original patch ``p``.
        """
        if self.source is None:
            return x
        index = self.source.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        return x.gather(1, index)

    def to_map(self, x: Tensor) -> Tensor:
        """Restore ``x (B, N, C)`` to a feature map ``(B, C, H0, W0)``."""
        B, _, C = x.shape
        H0, W0 = self.grid_size
        full = self.restore(x)
        return full.transpose(1, 2).reshape(B, C, H0, W0)
