"""The demo dataset in mmseg: ADE20K's folder layout, six classes."""
from mmseg.datasets import BaseSegDataset

from cait_mm.registry import DATASETS
from .demo_shapes_generator import CLASSES, PALETTE


@DATASETS.register_module()
class DemoShapesDataset(BaseSegDataset):
    """Textured shapes from ``tools/misc/make_demo_data.py``.

    Unlike ADE20K, label 0 is a real class (the background texture), so
    ``reduce_zero_label`` is off.
    """
    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, **kwargs):
        kwargs.setdefault('img_suffix', '.jpg')
        kwargs.setdefault('seg_map_suffix', '.png')
        kwargs.setdefault('reduce_zero_label', False)
        super().__init__(**kwargs)
