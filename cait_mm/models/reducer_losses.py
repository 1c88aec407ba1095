"""The backbone's token-reducer losses, added to a model's task losses.

TPS with learned scores (``score='learned'``) has a keep-ratio loss that only
the model around the backbone can add: mmseg's, mmdet's and mmpretrain's
models return their heads' losses alone. The models of cait_mm
(``DistillImageClassifier``, ``TokenReducerEncoderDecoder``,
``PadAwareMaskRCNN``) call :func:`add_reducer_losses` at the end of ``loss``.
"""
from typing import Dict

from torch import Tensor, nn


def add_reducer_losses(losses: Dict[str, Tensor],
                       backbone: nn.Module) -> Dict[str, Tensor]:
    """Add ``backbone.token_reducer.losses()`` (e.g. ``loss_tps_ratio``) to
    ``losses`` in place and return it; a backbone without a token reducer
    (or not a ``CAITViT``), or a reducer without losses, adds nothing.

    Raises:
        KeyError: A reducer loss has the name of a task loss.
    """
    reducer = getattr(backbone, 'token_reducer', None)
    if reducer is None:
        return losses
    for name, value in reducer.losses().items():
        if name in losses:
            raise KeyError(f'token reducer loss "{name}" collides with a '
                           f'task loss of the same name')
        losses[name] = value
    return losses
