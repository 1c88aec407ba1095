"""The ImageNet compression stage's classifier: mmpretrain's, plus a teacher.
"""
from typing import Dict, List, Optional, Tuple

import torch
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.structures import DataSample
from torch import Tensor, nn

from cait_mm.registry import MODELS
from ..reducer_losses import add_reducer_losses


@MODELS.register_module()
class DistillImageClassifier(ImageClassifier):
    """mmpretrain's ``ImageClassifier`` with distillation from a frozen
    teacher and the backbone's token-reducer losses.

    ``loss`` returns the head's classification loss (``loss``), the
    distillation loss of the head's logits against the teacher's
    (``loss_distill``; the CAIT student has no distillation token, so the
    class token's logits are distilled) and whatever
    ``backbone.token_reducer.losses()`` returns (e.g. ``loss_tps_ratio`` of
    TPS's learned scores). Prediction is ``ImageClassifier``'s.

    The teacher sees the same (mixed-up) batch as the student. It is kept
    out of the module tree on purpose: it is not part of the model being
    trained, so it is not in ``state_dict()`` (student checkpoints and the
    exported compressed file hold no teacher), not in ``parameters()`` (the
    optimizer and DDP never see it), and ``train()`` does not reach it. It
    follows the model's device and dtype (``to()``, ``cuda()``), and its
    weights are loaded by :meth:`init_weights`, which MMEngine calls before
    training only: testing a student does not need the teacher's file.

    Args:
        backbone (dict): e.g. ``cait_mm.CAITViT`` with
            ``out_type='cls_token'`` and ``final_norm=True``.
        teacher (dict, optional): e.g. ``dict(type='cait_mm.TimmTeacher',
            model='deit_small_patch16_224', checkpoint=...)``: a module
            mapping the images ``(B, 3, H, W)`` to logits ``(B, K)``.
        distill_loss (dict, optional): e.g.
            ``dict(type='cait_mm.DistillationLoss', mode='hard',
            loss_weight=0.5)``. Needed with ``teacher``, not without.
        **kwargs: ``ImageClassifier``'s (``neck``, ``head``, ``train_cfg``
            with batch augments, ``data_preprocessor``, ``init_cfg``, ...).
    """

    def __init__(self,
                 backbone: dict,
                 teacher: Optional[dict] = None,
                 distill_loss: Optional[dict] = None,
                 **kwargs):
        super().__init__(backbone=backbone, **kwargs)
        if (teacher is None) != (distill_loss is None):
            raise ValueError('DistillImageClassifier: set both teacher and '
                             'distill_loss, or neither')
        if not self.with_head and teacher is not None:
            raise ValueError('DistillImageClassifier: distillation needs a '
                             'head (it distils the head\'s logits)')
        # A tuple hides the teacher from nn.Module's registration (see the
        # class docstring).
        self._teacher: Tuple[nn.Module, ...] = () if teacher is None else (
            MMPRETRAIN_MODELS.build(teacher), )
        for module in self._teacher:
            module.requires_grad_(False).eval()
        self.distill_loss = None if distill_loss is None else \
            MMPRETRAIN_MODELS.build(distill_loss)

    @property
    def teacher(self) -> Optional[nn.Module]:
        """The frozen teacher, or ``None``."""
        return self._teacher[0] if self._teacher else None

    def _apply(self, fn, *args, **kwargs):
        # .to(), .cuda(), .half() reach registered submodules only.
        super()._apply(fn, *args, **kwargs)
        for module in self._teacher:
            module._apply(fn, *args, **kwargs)
        return self

    def init_weights(self) -> None:
        super().init_weights()
        if self.teacher is not None and hasattr(self.teacher, 'init_weights'):
            self.teacher.init_weights()

    def loss(self, inputs: Tensor,
             data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """
        Args:
            inputs (Tensor): Preprocessed (and batch-augmented) images
                ``(B, 3, H, W)``.
            data_samples (List[DataSample]): Their labels (``gt_label``, or
                ``gt_score`` after Mixup/CutMix).

        Returns:
            dict: ``loss`` (the head's), ``loss_distill`` with a teacher, and
            the backbone's token-reducer losses.
        """
        feats = self.extract_feat(inputs)
        # One head forward serves both losses: the head's _get_loss is what
        # its public loss() applies to these logits.
        cls_score = self.head(feats)
        losses = self.head._get_loss(cls_score, data_samples)
        if self.teacher is not None:
            with torch.no_grad():
                teacher_score = self.teacher(inputs)
            losses['loss_distill'] = self.distill_loss(cls_score,
                                                       teacher_score)
        return add_reducer_losses(losses, self.backbone)
