"""Datasets. Imported lazily by :data:`cait_mm.registry.DATASETS`; needs mmseg.
"""
from .demo_shapes import DemoShapesDataset

__all__ = ['DemoShapesDataset']
