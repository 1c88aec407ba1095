"""Mask R-CNN that tells a plain-ViT backbone and its neck where each image
of a padded batch ends."""
import copy
import inspect
from typing import List, Optional, Tuple

import torch
from mmdet.models.detectors import MaskRCNN
from mmdet.structures import SampleList
from torch import Tensor

from cait_mm.registry import MODELS
from ..reducer_losses import add_reducer_losses


def _img_shapes(samples: Optional[SampleList]
                ) -> Optional[List[Tuple[int, int]]]:
    return [tuple(s.img_shape) for s in samples] if samples else None


def _takes_valid_sizes(module) -> bool:
    return 'valid_sizes' in inspect.signature(module.forward).parameters


class PadAwareMixin:
    """Two-stage detection whose features know each image's content size.

    mmdet pads a batch to its largest image. A ConvNet sees the padding only
    near the content's edge, but a ViT attends over all of it, so an image's
    features would depend on what it is batched with. ``CAITViT`` (and
    ``SimpleFeaturePyramid``) ignore padding when their ``forward`` is given
    ``valid_sizes``, the ``img_shape`` of each image. mmdet's detectors call
    ``extract_feat(batch_inputs)`` without the data samples, so ``loss``,
    ``predict`` and ``_forward`` are written here around
    ``extract_feat(batch_inputs, batch_data_samples)``: the same head calls
    as mmdet 3.3's ``TwoStageDetector``, with the image shapes passed
    explicitly. Whether the neck takes them is decided once, when the model
    is built.
    """
    #: the backbone sees padded batches: only reducers that support them
    #: (``TokenReducer.supports_padding``) can run in it
    pads_backbone_inputs = True

    def _check_pad_aware(self) -> None:
        if not _takes_valid_sizes(self.backbone):
            raise TypeError(
                f'{type(self).__name__} needs a backbone whose forward takes '
                f'valid_sizes (cait_mm.CAITViT), got '
                f'{type(self.backbone).__name__}; use mmdet\'s MaskRCNN '
                'for other backbones')
        self._neck_takes_sizes = self.with_neck and _takes_valid_sizes(
            self.neck)

    def extract_feat(
            self,
            batch_inputs: Tensor,
            batch_data_samples: Optional[SampleList] = None) -> Tuple[Tensor]:
        """Backbone and neck features.

        Args:
            batch_inputs (Tensor): Images ``(B, C, H, W)``, padded at the
                bottom/right.
            batch_data_samples (list[DetDataSample], optional): Their
                ``img_shape`` is each image's content; without them every
                image fills the batch.

        Returns:
            tuple[Tensor]: The neck's maps ``(B, C_i, H_i, W_i)``.
        """
        sizes = _img_shapes(batch_data_samples)
        x = self.backbone(batch_inputs, valid_sizes=sizes)
        if self.with_neck:
            x = self.neck(x, valid_sizes=sizes) if self._neck_takes_sizes \
                else self.neck(x)
        return x

    def _proposals(self, x, batch_data_samples: SampleList,
                   use_rpn: bool) -> list:
        if use_rpn:
            return self.rpn_head.predict(x, batch_data_samples, rescale=False)
        return [sample.proposals for sample in batch_data_samples]

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> dict:
        """mmdet's losses (RPN with class-agnostic labels, RoI heads) plus
        the backbone's token-reducer losses."""
        x = self.extract_feat(batch_inputs, batch_data_samples)
        losses = dict()
        if self.with_rpn:
            proposal_cfg = self.train_cfg.get('rpn_proposal',
                                              self.test_cfg.rpn)
            rpn_samples = copy.deepcopy(batch_data_samples)
            for sample in rpn_samples:
                sample.gt_instances.labels = torch.zeros_like(
                    sample.gt_instances.labels)
            rpn_losses, proposals = self.rpn_head.loss_and_predict(
                x, rpn_samples, proposal_cfg=proposal_cfg)
            # the RoI head's losses have the same names
            for key in list(rpn_losses):
                if 'loss' in key and 'rpn' not in key:
                    rpn_losses[f'rpn_{key}'] = rpn_losses.pop(key)
            losses.update(rpn_losses)
        else:
            proposals = [sample.proposals for sample in batch_data_samples]
        losses.update(self.roi_head.loss(x, proposals, batch_data_samples))
        return add_reducer_losses(losses, self.backbone)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        x = self.extract_feat(batch_inputs, batch_data_samples)
        # mmdet: the samples' own proposals, if they have any
        use_rpn = batch_data_samples[0].get('proposals', None) is None
        results = self.roi_head.predict(
            x, self._proposals(x, batch_data_samples, use_rpn),
            batch_data_samples, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: Optional[SampleList] = None) -> tuple:
        x = self.extract_feat(batch_inputs, batch_data_samples)
        return (self.roi_head.forward(
            x, self._proposals(x, batch_data_samples, self.with_rpn),
            batch_data_samples), )


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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_pad_aware()
