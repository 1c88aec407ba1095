"""CheckInputs: no silent drop of bad labels, no silent NaN prediction."""
import logging
from typing import Dict, Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log

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
    image is reported by name through the run's logger (its log file, not
    a Python warning that a filter or ``PYTHONWARNINGS`` can hide); in
    training, where one such image turns every weight NaN, it fails.

    Args:
        num_classes (int, optional): Classes of the segmentation head; label
            maps (``gt_seg_map``) must hold ids in ``[0, num_classes)`` or
            ``ignore_index``. ``None`` checks no labels.
        ignore_index (int): The label id that losses and metrics ignore.
        non_finite (str): What a non-finite pixel does: ``'log'`` (a
            warning in the run's log) or ``'error'`` (logged, then a
            ``ValueError``).
    """

    def __init__(self, num_classes: Optional[int] = None,
                 ignore_index: int = 255, non_finite: str = 'log'):
        if non_finite not in ('log', 'error'):
            raise ValueError("non_finite must be 'log' or 'error', got "
                             f'{non_finite!r}')
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.non_finite = non_finite

    def transform(self, results: Dict) -> Dict:
        img = results.get('img')
        if isinstance(img, np.ndarray) and img.dtype.kind == 'f' and \
                not np.isfinite(img).all():
            bad = int((~np.isfinite(img)).sum())
            message = (f'{results.get("img_path", "an image")}: {bad} '
                       'non-finite pixel values (NaN or inf)')
            if self.non_finite == 'error':
                message += ('; training on it would make every weight NaN. '
                            'Fix or remove the image, or train with '
                            '--non-finite skip to leave out its steps')
                print_log(message, logger='current', level=logging.ERROR)
                raise ValueError(message)
            print_log(message + '; the prediction for this image is not '
                      'meaningful', logger='current', level=logging.WARNING)
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
                f'ignore_index={self.ignore_index}, '
                f'non_finite={self.non_finite!r})')


@TRANSFORMS.register_module()
class NameLoadErrors(BaseTransform):
    """Run a loading transform; if it fails, fail naming the file.

    A damaged file fails inside the decoder with its message only (a
    truncated PNG: ``OSError: image file is truncated``), which says nothing
    of which of thousands of files it was. ``tools/train.py`` and
    ``tools/test.py`` wrap every loading transform in this.

    Args:
        transform (dict): The loading transform's config.
    """

    def __init__(self, transform: dict):
        self.transform_cfg = transform
        self.inner = TRANSFORMS.build(transform)

    def transform(self, results: Dict) -> Dict:
        try:
            return self.inner(results)
        except Exception as error:
            # the annotation loader fails on the label map, the image one
            # on the image (it has not been loaded yet)
            key = 'seg_map_path' if 'Annotation' in type(
                self.inner).__name__ and results.get('seg_map_path') \
                else 'img_path'
            path = results.get(key) or 'a sample without a file name'
            raise RuntimeError(
                f'{path}: cannot be loaded by {type(self.inner).__name__} '
                f'({type(error).__name__}: {error})') from error

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.inner!r})'
