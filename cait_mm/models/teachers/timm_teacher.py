"""A frozen timm classifier, loaded from an official DeiT/timm file."""
from typing import Optional

import timm
import torch
from mmengine.model import BaseModule
from mmengine.runner import CheckpointLoader
from torch import Tensor

from cait_mm.registry import MODELS
from ..backbones.vit_checkpoint import load_strict, unwrap_state_dict


@MODELS.register_module()
class TimmTeacher(BaseModule):
    """A timm classifier that only gives targets: frozen, always in eval mode.

    The weights are loaded by :meth:`init_weights`, i.e. when MMEngine
    initialises the model before training; testing or exporting a student
    never reads the teacher's file.

    Args:
        model (str): timm model name, e.g. ``'deit_small_patch16_224'``
            (the architecture of DeiT's
            ``deit_small_patch16_224-cd65a155.pth``) or DeiT's own teacher
            ``'regnety_160'``.
        checkpoint (str): The weights: DeiT's ``{'model': state_dict}``,
            MMEngine's ``{'state_dict': ...}`` or a bare state dict of that
            timm model. Loaded strictly: a file of another architecture
            fails, naming the missing, unexpected and mis-shaped keys.
        **kwargs: Passed on to ``timm.create_model`` (e.g. ``num_classes``,
            ``img_size``, or architecture overrides for a small model).
    """

    def __init__(self, model: str, checkpoint: str, **kwargs):
        super().__init__(init_cfg=None)
        self.model_name = model
        self.checkpoint = checkpoint
        # pretrained=False: timm must never download; the file is the source.
        self.model = timm.create_model(model, pretrained=False, **kwargs)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> 'TimmTeacher':
        """Stay in eval mode: the targets must not depend on dropout, drop
        path or batch statistics of the training batch."""
        return super().train(False)

    def init_weights(self) -> None:
        checkpoint = CheckpointLoader.load_checkpoint(
            self.checkpoint, map_location='cpu')
        load_strict(self.model, unwrap_state_dict(checkpoint),
                    f'Teacher checkpoint "{self.checkpoint}"')
        self._is_init = True

    @torch.no_grad()
    def forward(self, inputs: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` -> logits ``(B, num_classes)``, with no
        autograd graph."""
        return self.model(inputs)

    @property
    def num_classes(self) -> Optional[int]:
        return getattr(self.model, 'num_classes', None)
