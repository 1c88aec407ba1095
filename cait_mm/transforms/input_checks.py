"""CheckInputs: no silent drop of bad labels, no silent NaN prediction."""
import warnings
from typing import Dict, Optional

import numpy as np
from mmcv.transforms import BaseTransform

from cait_mm.registry import TRANSFORMS


@TRANSFORMS.register_module()
class CheckInputs(BaseTransform):
    """Check a loaded sample: label ids in range, pixels finite.

    mmseg's IoU metric drops label ids outside ``[0, num_classes)`` without
    a word (the score looks plausible, a class accuracy becomes ``nan``) and
    training stops on them with ``IndexError: Target 9 is out of bounds``,
    naming no file; an image with a non-finite pixel is predicted as
    background everywhere. ``tools/train.py`` and ``tools/test.py`` put this
    transform after the annotations are loaded in every pipeline, so that a
    bad label map fails naming the file and the ids found, and a non-finite
    image is reported by name.

    Args:
        num_classes (int, optional): Classes of the segmentation head; label
            maps (``gt_seg_map``) must hold ids in ``[0, num_classes)`` or
            ``ignore_index``. ``None`` checks no labels.
        ignore_index (int): The label id that losses and metrics ignore.
    """

    def __init__(self, num_classes: Optional[int] = None,
                 ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: Dict) -> Dict:
        img = results.get('img')
        if isinstance(img, np.ndarray) and img.dtype.kind == 'f' and \
                not np.isfinite(img).all():
            bad = int((~np.isfinite(img)).sum())
            warnings.warn(f'{results.get("img_path", "an image")}: {bad} '
                          'non-finite pixel values (NaN or inf); the '
                          'prediction for this image is not meaningful')
        seg = results.get('gt_seg_map')
        if self.num_classes is not None and isinstance(seg, np.ndarray):
            bad = ((seg < 0) | (seg >= self.num_classes)) & \
                (seg != self.ignore_index)
            if bad.any():
                raise ValueError(
                    f'{results.get("seg_map_path", "a label map")}: label '
                    f'ids {np.unique(seg[bad]).tolist()} are outside [0, '
                    f'{self.num_classes}) and are not the ignore index '
                    f'{self.ignore_index}. Fix the label map, or the '
                    "model's num_classes / the dataset's reduce_zero_label.")
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index})')
