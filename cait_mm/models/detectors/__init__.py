"""Detectors; they subclass mmdet's, so :data:`cait_mm.registry.MODELS`
imports this package only once mmdet is in use (see ``task_locations``)."""
from .pad_aware_mask_rcnn import PadAwareMaskRCNN, PadAwareMixin

__all__ = ['PadAwareMaskRCNN', 'PadAwareMixin']
