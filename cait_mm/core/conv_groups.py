"""CDCP on convolutions: compactors after a conv (+ norm), folded at export.

ResRep's original setting, which CDCP's compactors follow: an identity-
initialised 1x1 compactor ``Q (C, C)`` sits after a convolution and its
batch norm and before the activation; a channel's importance is the norm of
its compactor row (:class:`~cait_mm.core.compactor.ChannelGroup` with one
"head" of ``C`` channels). Because ``Q`` is linear and comes before the
non-linearity, conv, norm (in eval mode) and compactor fold into one conv
with a bias, whose pruned output rows are then dropped.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def apply_compactor(x: Tensor, compactor: Tensor) -> Tensor:
    """``x (B, C, H, W)`` mixed by ``compactor (C, C)``:
    ``out[:, o] = sum_c compactor[o, c] * x[:, c]``, a 1x1 convolution."""
    return F.conv2d(x, compactor.to(x.dtype)[:, :, None, None])


def fold_conv(weight: Tensor,
              bias: Optional[Tensor],
              norm: Optional[Tuple[Tensor, Tensor, Optional[Tensor],
                                   Optional[Tensor], float]] = None,
              compactor: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """One conv computing conv, eval-mode norm and compactor in a row.

    Args:
        weight (Tensor): ``(C, C_in, kh, kw)`` conv weight.
        bias (Tensor, optional): ``(C, )`` conv bias.
        norm (tuple, optional): Batch-norm ``(running_mean, running_var,
            weight or None, bias or None, eps)``, each ``(C, )``.
        compactor (Tensor, optional): ``(C, C)``.

    Returns:
        tuple: ``weight (C, C_in, kh, kw)`` and ``bias (C, )`` with
        ``conv'(x) = Q (norm(conv(x)))``.
    """
    out = weight.shape[0]
    shift = bias if bias is not None else weight.new_zeros(out)
    if norm is not None:
        mean, var, gamma, beta, eps = norm
        scale = (var + eps).rsqrt()
        if gamma is not None:
            scale = scale * gamma
        shift = (shift - mean) * scale
        if beta is not None:
            shift = shift + beta
        weight = weight * scale[:, None, None, None]
    if compactor is not None:
        weight = (compactor @ weight.reshape(out, -1)).reshape(weight.shape)
        shift = compactor @ shift
    return weight, shift


def kept_channels(pruned: Optional[Tensor], width: int) -> Tensor:
    """``(kept, )`` long: the channels a ``(width, )`` pruning mask keeps, in
    increasing order (all of them without a mask)."""
    if pruned is None:
        return torch.arange(width)
    return (~pruned.cpu()).nonzero().flatten()


def input_columns(kept: Sequence[Tensor], widths: Sequence[int]) -> Tensor:
    """Input channels that stay of a layer fed with the concatenation of
    sources of ``widths`` channels, of which ``kept`` stay: each source's
    kept indices, offset by the widths before it."""
    offsets = torch.tensor([0, *widths[:-1]]).cumsum(0).tolist()
    return torch.cat([k + o for k, o in zip(kept, offsets)])


def masked_channel_norm(x: Tensor, keep: Tensor, weight: Optional[Tensor],
                        bias: Optional[Tensor], eps: float) -> Tensor:
    """Layer norm over the kept channels of ``x (B, C, H, W)``, zero on the
    others: what a layer norm over the ``keep`` channels alone computes.

    A channel-wise layer norm cannot fold a compactor after it (its
    statistics mix channels), so the compactor goes before it, and the
    norm's statistics leave the pruned channels out: the masked network
    then computes what the pruned one does.

    Args:
        keep (Tensor): ``(C, )`` bool.
        weight, bias (Tensor, optional): ``(C, )`` affine parameters.
    """
    mask = keep.to(x.dtype)[None, :, None, None]
    count = mask.sum()
    mean = (x * mask).sum(1, keepdim=True) / count
    centred = (x - mean) * mask
    var = centred.pow(2).sum(1, keepdim=True) / count
    y = centred * (var + eps).rsqrt()
    if weight is not None:
        y = y * weight[None, :, None, None]
    if bias is not None:
        y = y + bias[None, :, None, None]
    return y * mask
