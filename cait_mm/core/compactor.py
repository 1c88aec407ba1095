"""Compactors: the learnable channel maps that CDCP prunes through.

A *channel group* is a set of output channels of a linear layer that are
pruned together, e.g. the value dims of every head. An identity-initialised
``d x d`` compactor (one per head, block-diagonal) follows the layer; a
channel's importance is the L2 norm of its compactor row. Pruning a channel
means zeroing that row, which removes the channel from the product, so the
compactor folds into the linear layer before it and the channel is dropped.

Several layers may share one group (``members``): the query and key
projections share the QK group, so the same dims of ``q`` and ``k`` are
kept in every head (attention-level consistency: ``q . k`` sums over the
shared dims), and a channel's importance is the root of the summed squares
of its q and k rows.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn


def num_to_prune(ratio: float, dim: int, kind: str) -> int:
    """Channels that ``ratio`` prunes out of ``dim`` (rounded down).

    Raises:
        ValueError: if ``ratio`` is outside ``[0, 1]`` or would prune all
            ``dim`` channels (of a head, for ``kind`` qk and v).
    """
    if not 0 <= ratio <= 1:
        raise ValueError(f'pruning ratio {ratio} for the {kind} channels '
                         'must be in [0, 1)')
    count = int(ratio * dim + 1e-6)
    if count >= dim:
        raise ValueError(
            f'pruning ratio {ratio} would leave no {kind} channel in a head '
            f'of {dim}; use a ratio below {(dim - 1) / dim:.4f}')
    return count


class ChannelGroup(nn.Module):
    """Compactors of ``members`` layers that share one pruning mask.

    Args:
        kind (str): Name of the group (``'qk'``, ``'v'``, ``'mlp'``).
        members (int): Layers whose channels the mask prunes alike.
        heads (int): Independent blocks of channels (heads); each prunes
            the same number of its own channels (head-level consistency).
        dim (int): Channels per head ``d``.

    Attributes:
        weight (Parameter): ``(members, heads, d, d)`` compactors.
        pruned (Tensor): ``(heads, d)`` bool buffer, the channels currently
            selected for pruning.
    """

    def __init__(self, kind: str, members: int, heads: int, dim: int):
        super().__init__()
        self.kind = kind
        eye = torch.eye(dim).expand(members, heads, dim, dim)
        self.weight = nn.Parameter(eye.clone())
        self.register_buffer('pruned', torch.zeros(heads, dim,
                                                   dtype=torch.bool))

    @property
    def heads(self) -> int:
        return self.weight.shape[1]

    @property
    def dim(self) -> int:
        return self.weight.shape[-1]

    def extra_repr(self) -> str:
        return (f'kind={self.kind!r}, members={self.weight.shape[0]}, '
                f'heads={self.heads}, dim={self.dim}')

    def importance(self) -> Tensor:
        """``(heads, d)``: the L2 norm of each channel's compactor rows,
        taken over all members together."""
        return self.weight.detach().pow(2).sum(dim=(0, -1)).sqrt()

    def num_to_prune(self, ratio: float) -> int:
        """Channels per head that ``ratio`` prunes (see
        :func:`num_to_prune`)."""
        return num_to_prune(ratio, self.dim, self.kind)

    @torch.no_grad()
    def select(self, ratio: float) -> Tensor:
        """Mark the ``ratio`` least important channels of every head as
        pruned (ties: lower index first) and release the rest.

        Returns:
            Tensor: ``(heads, d)`` bool, the new :attr:`pruned`.
        """
        count = self.num_to_prune(ratio)
        order = self.importance().argsort(dim=-1, stable=True)
        pruned = torch.zeros_like(self.pruned)
        pruned.scatter_(-1, order[:, :count], True)
        self.pruned.copy_(pruned)
        return pruned

    @torch.no_grad()
    def shrink_pruned(self, step: float) -> None:
        """Group-lasso pull of the pruned channels towards zero.

        The proximal step of ``step * sum_c ||w_c||`` over the pruned
        channels ``c`` (each channel's rows in all members together): a row
        whose norm is at most ``step`` becomes exactly zero, so a channel
        that stays pruned long enough contributes nothing before export.
        """
        if step <= 0 or not self.pruned.any():
            return
        norm = self.importance()
        scale = (1 - step / norm.clamp_min(1e-12)).clamp_min(0)
        scale = torch.where(self.pruned, scale, torch.ones_like(scale))
        self.weight.mul_(scale[None, :, :, None].to(self.weight.dtype))

    def compactors(self, masked: bool) -> Tensor:
        """The compactors to apply, ``(members, heads, d, d)``.

        In training the rows of pruned channels are detached: they get no
        task gradient, only the group-lasso pull. With ``masked`` they are
        zeroed: the network computes what the pruned network computes.
        """
        weight = self.weight
        if masked:
            return weight * (~self.pruned)[None, :, :, None].to(weight.dtype)
        if self.training and self.pruned.any():
            return torch.where(self.pruned[None, :, :, None],
                               weight.detach(), weight)
        return weight

    def fold(self, compactor: Tensor, weight: Tensor,
             bias: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """Fold one member's compactor ``(heads, d, d)`` into the linear
        layer before it: ``weight (heads * d, in)``, ``bias (heads * d)``.

        ``y = Wc (W x + b) = (Wc W) x + Wc b``; folding costs
        ``heads * d^2 * in`` multiply-adds, independent of the token count,
        so it is cheaper than applying the compactor to the tokens.
        """
        h, d = self.heads, self.dim
        weight = (compactor @ weight.view(h, d, -1)).reshape(h * d, -1)
        if bias is not None:
            bias = (compactor @ bias.view(h, d, 1)).reshape(h * d)
        return weight, bias

    def kept_index(self) -> Tensor:
        """``(heads, d - pruned)`` long, the kept channels of every head in
        increasing order.

        Raises:
            RuntimeError: if heads keep different numbers of channels.
        """
        counts = (~self.pruned).sum(-1)
        if (counts != counts[0]).any():
            raise RuntimeError(f'{self.kind} heads keep different numbers of '
                               f'channels: {counts.tolist()}')
        # stable sort puts kept (False) first, in index order
        order = self.pruned.to(torch.uint8).argsort(dim=-1, stable=True)
        return order[:, :int(counts[0])]
