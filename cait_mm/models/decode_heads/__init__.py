"""Decode heads; they subclass mmseg's, so :data:`cait_mm.registry.MODELS`
imports this package only on the first look-up of their names."""
from .cait_uper_head import HEAD_GROUPS, CAITUPerHead

__all__ = ['CAITUPerHead', 'HEAD_GROUPS']
