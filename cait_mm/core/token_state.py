"""Book-keeping for patch tokens that token reducers merge or prune."""
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .batch_rows import flat_index, shape_cached
from .padding import content_mask


def count_padding(counts: Sequence[int], num_tokens: int,
                  device) -> Tensor:
    """``(B, num_tokens)`` bool, True past each image's ``counts[b]``
    content tokens (content first, off the grid)."""
    counts = tuple(counts)
    return shape_cached(
        ('padding_count', counts, num_tokens, device),
        lambda: torch.arange(num_tokens, device=device)[None] >=
        torch.tensor(counts, device=device)[:, None])


def padding_bias(dtype: torch.dtype) -> float:
    """The attention bias of a padding key: finite, yet far enough below
    any logit that its softmax weight is exactly 0.

    Not ``-inf``: CUDA's fused kernels (memory-efficient, Flash, cuDNN) run
    an online softmax over key tiles, and a tile of ``-inf`` logits gives
    ``-inf - (-inf) = NaN`` when the bias is folded into the keys
    (:func:`~cait_mm.core.vit_layers.fold_bias`). A 64th of the dtype's
    lowest value stays finite there when the fold multiplies it by
    ``1 / scale`` (up to 64), and ``exp`` of it is 0 in every float type.
    """
    return torch.finfo(dtype).min / 64


#: Row stride, in elements, of an aligned attention bias. CUDA's fused
#: kernels that take a mask (memory-efficient attention) want every stride
#: but the last a multiple of 8: SDPA pads (copies) an unaligned mask in
#: every block, an aligned one it reads as it is.
BIAS_ALIGNMENT = 16


def _with_prefix(bias: Tensor, num_prefix: int, aligned: bool) -> Tensor:
    """``(B, N)`` -> ``(B, P + N)`` with zeros first (prefix tokens have size
    1), with ``aligned`` a view of rows of a multiple of
    :data:`BIAS_ALIGNMENT` elements: one cat with cached zeros (a pad would
    be two kernels), none where neither is needed."""
    B, N = bias.shape
    length = num_prefix + N
    tail = -length % BIAS_ALIGNMENT if aligned else 0
    if not (num_prefix or tail):
        return bias

    def zeros(n):
        return [shape_cached(('bias_zeros', B, n, bias.dtype, bias.device),
                             lambda: bias.new_zeros(B, n))] if n else []
    bias = torch.cat(zeros(num_prefix) + [bias] + zeros(tail), 1)
    return bias[:, :length] if tail else bias


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
        valid_shape (tuple, optional): Per image, the current ``(h, w)``
            of its real content in a padded batch, as host ints: the
            top-left ``h x w`` tokens of the grid; the rest is padding, which
            attention ignores. Off the grid (``shape`` ``None``,
            ATMEAdaptive), the content is the first ``h * w`` tokens.
            ``None`` when nothing is padded.
        device (torch.device, optional): Where the padding mask is built
            (padded batches).
    """
    grid_size: Tuple[int, int]
    shape: Optional[Tuple[int, int]] = None
    size: Optional[Tensor] = None
    source: Optional[Tensor] = None
    valid_shape: Optional[Tuple[Tuple[int, int], ...]] = None
    device: Optional[torch.device] = None
    # what restore() selects and the attention bias, built once per state:
    # (sequence length, prefix, rows), (prefix, dtype, bias)
    _restore_rows: Optional[tuple] = field(
        default=None, init=False, repr=False, compare=False)
    _bias: Optional[tuple] = field(
        default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_grid(cls,
                  grid_size: Tuple[int, int],
                  valid_shape: Optional[Sequence[Tuple[int, int]]] = None,
                  device: Optional[torch.device] = None) -> 'TokenState':
        """State of an unreduced ``(H0, W0)`` grid (``valid_shape``: each
        image's content grid in a padded batch)."""
        return cls(
            grid_size=tuple(grid_size),
            shape=tuple(grid_size),
            valid_shape=None if valid_shape is None else tuple(
                (int(h), int(w)) for h, w in valid_shape),
            device=device)

    def padding_mask(self) -> Optional[Tensor]:
        """``(B, N)`` bool, True for padding tokens (off the grid, ``N``
        comes from the sizes)."""
        if self.valid_shape is None:
            return None
        if self.shape is None:
            return count_padding((h * w for h, w in self.valid_shape),
                                 self.size.shape[1], self.device)
        return shape_cached(
            ('padding_mask', self.valid_shape, self.shape, self.device),
            lambda: ~content_mask(self.valid_shape, self.shape,
                                  self.device).flatten(1))

    def attn_bias(self, num_prefix_tokens: int,
                  dtype: Optional[torch.dtype] = None,
                  aligned: bool = False) -> Optional[Tensor]:
        """Additive attention bias over keys, ``(B, 1, 1, P + N)``.

        ``log(size)`` for proportional attention (prefix tokens have size 1,
        hence 0) and :func:`padding_bias` for padding tokens. Returns
        ``None`` when there is neither, so attention stays unbiased and
        bit-identical to a plain ViT. Built once per reduction, in
        ``dtype`` (the attention's, so blocks need not cast it; default:
        the sizes' dtype); ``aligned``: a view of rows of a multiple of
        :data:`BIAS_ALIGNMENT` elements (a mask CUDA's kernels read as it
        is).
        """
        cached = self._bias  # an aligned bias serves either request
        if cached is not None and cached[:2] == (num_prefix_tokens, dtype) \
                and cached[2] >= aligned:
            return cached[3]
        pad = self.padding_mask()
        if self.size is None and pad is None:
            return None
        if pad is None:
            bias = self.size.log()
        else:
            bias = torch.zeros(pad.shape, device=pad.device,
                               dtype=torch.float32 if self.size is None
                               else self.size.dtype)
            if self.size is not None:
                bias = bias + self.size.log()
            bias = bias.masked_fill(pad, padding_bias(dtype or bias.dtype))
        if dtype is not None and bias.dtype != dtype:
            bias = bias.to(dtype)
        bias = _with_prefix(bias, num_prefix_tokens, aligned)
        bias = bias.view(bias.shape[0], 1, 1, -1)
        self._bias = (num_prefix_tokens, dtype, aligned, bias)
        return bias

    def restore(self, x: Tensor, num_prefix: int = 0) -> Tensor:
        """Put reduced tokens back on the original grid.

        Args:
            x (Tensor): Current tokens ``(B, P + N, C)``, ``P =
                num_prefix`` prefix tokens first (they are left out).

        Returns:
            Tensor: ``(B, H0 * W0, C)``; position ``p`` holds the token that
            absorbed original patch ``p``. One row selection from ``x``
            (no copy of the tokens before it); a view of ``x`` while
            nothing was reduced.
        """
        if self.source is None:
            return x[:, num_prefix:] if num_prefix else x
        B, T, C = x.shape
        key = (T, num_prefix)
        if self._restore_rows is None or self._restore_rows[:2] != key:
            self._restore_rows = key + (flat_index(
                self.source, T, num_prefix), )
        return x.reshape(B * T, C).index_select(
            0, self._restore_rows[2]).view(B, -1, C)

    def to_map(self, x: Tensor, num_prefix: int = 0) -> Tensor:
        """Restore ``x (B, P + N, C)`` to a feature map ``(B, C, H0, W0)``
        (a view of the restored tokens)."""
        B, _, C = x.shape
        H0, W0 = self.grid_size
        full = self.restore(x, num_prefix)
        return full.transpose(1, 2).reshape(B, C, H0, W0)
