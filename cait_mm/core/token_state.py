"""Book-keeping for patch tokens that token reducers merge or prune."""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from .batch_rows import batch_select
from .padding import content_mask


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
        valid_shape (Tensor, optional): ``(B, 2)`` long, the current
            ``(h, w)`` of each image's real content in a padded batch: the
            top-left ``h x w`` tokens of the grid; the rest is padding, which
            attention ignores. ``None`` when nothing is padded.
    """
    grid_size: Tuple[int, int]
    shape: Optional[Tuple[int, int]] = None
    size: Optional[Tensor] = None
    source: Optional[Tensor] = None
    valid_shape: Optional[Tensor] = None

    @classmethod
    def from_grid(cls,
                  grid_size: Tuple[int, int],
                  valid_shape: Optional[Tensor] = None) -> 'TokenState':
        """State of an unreduced ``(H0, W0)`` grid."""
        return cls(
            grid_size=tuple(grid_size),
            shape=tuple(grid_size),
            valid_shape=valid_shape)

    def padding_mask(self) -> Optional[Tensor]:
        """``(B, N)`` bool, True for padding tokens; needs a grid."""
        if self.valid_shape is None:
            return None
        return ~content_mask(self.valid_shape, self.shape).flatten(1)

    def attn_bias(self, num_prefix_tokens: int) -> Optional[Tensor]:
        """Additive attention bias over keys, ``(B, 1, 1, P + N)``.

        ``log(size)`` for proportional attention (prefix tokens have size 1,
        hence 0) and ``-inf`` for padding tokens. Returns ``None`` when there
        is neither, so attention stays unbiased and bit-identical to a plain
        ViT.
        """
        pad = self.padding_mask()
        if self.size is None and pad is None:
            return None
        ref = self.size if self.size is not None else pad
        bias = torch.zeros(
            ref.shape[0], ref.shape[1], device=ref.device,
            dtype=self.size.dtype if self.size is not None else torch.float32)
        if self.size is not None:
            bias = bias + self.size.log()
        if pad is not None:
            bias = bias.masked_fill(pad, float('-inf'))
        prefix = bias.new_zeros(bias.shape[0], num_prefix_tokens)
        return torch.cat([prefix, bias], dim=1)[:, None, None, :]

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
        return batch_select(x, self.source)

    def to_map(self, x: Tensor) -> Tensor:
        """Restore ``x (B, N, C)`` to a feature map ``(B, C, H0, W0)``."""
        B, _, C = x.shape
        H0, W0 = self.grid_size
        full = self.restore(x)
        return full.transpose(1, 2).reshape(B, C, H0, W0)
