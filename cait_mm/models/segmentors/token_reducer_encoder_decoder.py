"""mmseg's EncoderDecoder with the backbone's token-reducer losses and
post-processing that does not resize what already has the image's size."""
from typing import Dict

from mmengine.structures import PixelData
from mmseg.models.segmentors import EncoderDecoder
from torch import Tensor

from cait_mm.registry import MODELS
from ..reducer_losses import add_reducer_losses


@MODELS.register_module()
class TokenReducerEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` whose ``loss`` also returns the backbone's
    token-reducer losses (``loss_tps_ratio`` of TPS with learned scores),
    and whose post-processing skips the resize of logits that already have
    the image's size.

    Every cait_mm UperNet config uses it (``configs/_base_/models/``), dense
    ones included, so that dense and compressed rows of a benchmark run the
    same code after the network.
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

    def postprocess_result(self, seg_logits: Tensor, data_samples=None):
        """mmseg's post-processing, except that logits already at each
        image's ``ori_shape`` (no padding to remove, no flip) are not resized
        to the size they have: mmseg interpolates them anyway (one pass over
        every class map of every image), and a bilinear resize to the same
        size is the identity, so the predictions are bit-identical.

        Args:
            seg_logits (Tensor): ``(B, C, H, W)``, at the input's size.
            data_samples (list[SegDataSample], optional): Their metainfo.
        """
        H, W = seg_logits.shape[-2:]
        if data_samples is None or not all(
                _needs_no_resize(sample.metainfo, (H, W))
                for sample in data_samples):
            return super().postprocess_result(seg_logits, data_samples)
        for logits, sample in zip(seg_logits, data_samples):
            if logits.shape[0] > 1:
                pred = logits.argmax(dim=0, keepdim=True)
            else:
                logits = logits.sigmoid()
                pred = (logits > self.decode_head.threshold).to(logits)
            sample.set_data(dict(seg_logits=PixelData(data=logits),
                                 pred_sem_seg=PixelData(data=pred)))
        return data_samples


def _needs_no_resize(meta: Dict, size) -> bool:
    """Whether mmseg's post-processing would resize an image's logits of
    ``size`` to the size they already have."""
    padding = meta.get('img_padding_size', meta.get('padding_size'))
    return (tuple(meta.get('ori_shape', ())) == tuple(size)
            and not meta.get('flip') and not any(padding or ()))
