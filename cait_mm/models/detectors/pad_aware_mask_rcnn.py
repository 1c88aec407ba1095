"""Mask R-CNN that tells a plain-ViT backbone and its neck where each image
of a padded batch ends."""
import inspect
from contextlib import contextmanager
from typing import List, Optional, Tuple

from mmdet.models.detectors import MaskRCNN
from mmdet.structures import SampleList
from torch import Tensor, nn

from cait_mm.registry import MODELS
from ..reducer_losses import add_reducer_losses


def _accepts_valid_sizes(module: nn.Module) -> bool:
    return 'valid_sizes' in inspect.signature(module.forward).parameters


def _img_shapes(samples: Optional[SampleList]):
    return [tuple(s.img_shape) for s in samples] if samples else None


class PadAwareMixin:
    """Feature extraction that passes each image's content size along.

    mmdet pads a batch to its largest image and calls
    ``self.backbone(batch_inputs)``. A ConvNet sees the padding only near
    the content's edge, but a ViT attends over all of it, so an image's
    features would depend on what it is batched with. ``CAITViT`` and
    ``SimpleFeaturePyramid`` can ignore padding when they are given
    ``valid_sizes`` (the ``img_shape`` of each image); mmdet's
    ``loss``/``predict``/``_forward`` only hand the data samples to the
    heads, so they are wrapped to make the sizes available to
    :meth:`extract_feat` for the duration of the call (keeping mmdet's code
    paths instead of copying them). Modules whose ``forward`` takes no
    ``valid_sizes`` are called as usual.
    """
    _valid_sizes: Optional[List[Tuple[int, int]]] = None

    @contextmanager
    def _content_sizes(self, batch_data_samples: Optional[SampleList]):
        self._valid_sizes = _img_shapes(batch_data_samples)
        try:
            yield
        finally:
            self._valid_sizes = None

    def extract_feat(
            self,
            batch_inputs: Tensor,
            batch_data_samples: Optional[SampleList] = None) -> Tuple[Tensor]:
        """Backbone and neck features.

        Args:
            batch_inputs (Tensor): Images ``(B, C, H, W)``, padded at the
                bottom/right.
            batch_data_samples (list[DetDataSample], optional): Their
                ``img_shape`` is each image's content; by default those of
                the enclosing ``loss``/``predict``/``_forward`` call, if any.

        Returns:
            tuple[Tensor]: The neck's maps ``(B, C_i, H_i, W_i)``.
        """
        sizes = self._valid_sizes if batch_data_samples is None else \
            _img_shapes(batch_data_samples)

        def call(module, x):
            if sizes is not None and _accepts_valid_sizes(module):
                return module(x, valid_sizes=sizes)
            return module(x)

        x = call(self.backbone, batch_inputs)
        if self.with_neck:
            x = call(self.neck, x)
        return x

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList):
        with self._content_sizes(batch_data_samples):
            losses = super().loss(batch_inputs, batch_data_samples)
        return add_reducer_losses(losses, self.backbone)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        with self._content_sizes(batch_data_samples):
            return super().predict(batch_inputs, batch_data_samples, rescale)

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: Optional[SampleList] = None):
        with self._content_sizes(batch_data_samples):
            return super()._forward(batch_inputs, batch_data_samples)


@MODELS.register_module()
class PadAwareMaskRCNN(PadAwareMixin, MaskRCNN):
    """mmdet's ``MaskRCNN`` whose backbone and neck ignore batch padding.

    With ``CAITViT`` and ``SimpleFeaturePyramid``, an image's features, RPN
    maps, and RoI head outputs for given proposals are the same in any
    padded batch as alone (up to float rounding). What remains
    batch-dependent is mmdet's own: the RPN also scores anchors on the
    padding (their boxes are clipped to the image), and RoIAlign clamps
    samples to the map border where an unpadded image's map ends.
    """
