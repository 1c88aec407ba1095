"""Datasets. Imported lazily by :data:`cait_mm.registry.DATASETS`; needs mmseg.
"""
from .demo_shapes import DemoShapesDataset
from .dubai_aerial import DubaiAerialDataset
from .isbi_membrane import ISBIMembraneDataset

__all__ = ['DemoShapesDataset', 'DubaiAerialDataset', 'ISBIMembraneDataset']
