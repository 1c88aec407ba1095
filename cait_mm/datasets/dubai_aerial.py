"""Dubai aerial imagery in mmseg, as written by
``tools/dataset_converters/dubai_aerial.py``."""
from mmseg.datasets import BaseSegDataset

from cait_mm.registry import DATASETS
from .converters.dubai_aerial import CLASSES, PALETTE


@DATASETS.register_module()
class DubaiAerialDataset(BaseSegDataset):
    """RGB crops (512x512 by default), ``.png`` images and label maps in
    ADE20K's folder layout; label 0 (building) is a real class, so
    ``reduce_zero_label`` is off; 255 marks unknown mask colours."""
    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, **kwargs):
        kwargs.setdefault('img_suffix', '.png')
        kwargs.setdefault('seg_map_suffix', '.png')
        kwargs.setdefault('reduce_zero_label', False)
        super().__init__(**kwargs)
