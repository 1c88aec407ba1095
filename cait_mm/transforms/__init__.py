"""Data transforms (mmcv only: usable in mmseg, mmdet and mmpretrain
pipelines), imported lazily by :data:`cait_mm.registry.TRANSFORMS`."""
from .input_checks import CheckInputs, NameLoadErrors

__all__ = ['CheckInputs', 'NameLoadErrors']
