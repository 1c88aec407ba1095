"""mmseg's EncoderDecoder with the backbone's token-reducer losses."""
from typing import Dict

from mmseg.models.segmentors import EncoderDecoder
from torch import Tensor

from cait_mm.registry import MODELS
from ..reducer_losses import add_reducer_losses


@MODELS.register_module()
class TokenReducerEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` whose ``loss`` also returns the backbone's
    token-reducer losses (``loss_tps_ratio`` of TPS with learned scores).

    Use it as ``model.type='cait_mm.TokenReducerEncoderDecoder'`` when a
    ``CAITViT`` trains a learned token reducer in a segmentation model;
    otherwise it is mmseg's ``EncoderDecoder`` unchanged.
    """

    def loss(self, inputs: Tensor, data_samples) -> Dict[str, Tensor]:
        """
        Args:
            inputs (Tensor): Images ``(B, 3, H, W)``.
            data_samples (list[SegDataSample]): Their ground truth.

        Returns:
            dict: The decode and auxiliary heads' losses and the backbone's
            token-reducer losses.
        """
        return add_reducer_losses(super().loss(inputs, data_samples),
                                  self.backbone)
