"""ISBI 2012 EM membranes in mmseg, as written by
``tools/dataset_converters/isbi_membrane.py``."""
from mmseg.datasets import BaseSegDataset

from cait_mm.registry import DATASETS
from .converters.isbi_membrane import CLASSES, PALETTE


@DATASETS.register_module()
class ISBIMembraneDataset(BaseSegDataset):
    """Grey 512x512 EM slices, ``.png`` images and label maps in ADE20K's
    folder layout; label 0 (membrane) is a real class, so
    ``reduce_zero_label`` is off."""
    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, **kwargs):
        kwargs.setdefault('img_suffix', '.png')
        kwargs.setdefault('seg_map_suffix', '.png')
        kwargs.setdefault('reduce_zero_label', False)
        super().__init__(**kwargs)
