"""What the dataset converters share: the output layout, sliding windows,
image I/O, and the summary they print.

Every converter writes mmseg's (and ADE20K's) folder layout::

    images/{training,validation}/NAME.png       # the image
    annotations/{training,validation}/NAME.png  # class ids, 255 = ignore
"""
import os
import os.path as osp
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from cait_mm.utils.atomic_write import write_bytes

SPLITS = ('training', 'validation')
IGNORE_INDEX = 255


def prepare_layout(out_dir: str,
                   overwrite: bool = False) -> Dict[Tuple[str, str], str]:
    """Create the four layout folders, empty.

    Args:
        out_dir (str): Dataset root to write.
        overwrite (bool): Delete layout folders that already hold files
            (and only those) instead of refusing.

    Returns:
        dict: ``(kind, split) -> folder``, kind ``'images'`` or
        ``'annotations'``.

    Raises:
        FileExistsError: A layout folder holds files and ``overwrite`` is
            off; stale files from another conversion would silently join the
            dataset.
    """
    dirs = {
        (kind, split): osp.join(out_dir, kind, split)
        for kind in ('images', 'annotations')
        for split in SPLITS
    }
    for path in dirs.values():
        if osp.isdir(path) and os.listdir(path):
            if not overwrite:
                raise FileExistsError(
                    f'{path} is not empty; choose another output folder or '
                    'pass --overwrite to replace the converted dataset')
            shutil.rmtree(path)
    for path in dirs.values():
        os.makedirs(path, exist_ok=True)
    return dirs


@contextmanager
def layout_for_writing(
        out_dir: str,
        overwrite: bool = False) -> Iterator[Dict[Tuple[str, str], str]]:
    """:func:`prepare_layout`, and remove the layout folders again if the
    conversion fails half-way: they held nothing of the user's, and a
    partial dataset would pass for a complete one."""
    dirs = prepare_layout(out_dir, overwrite)
    try:
        yield dirs
    except BaseException:
        for path in dirs.values():
            shutil.rmtree(path, ignore_errors=True)
        for kind in ('images', 'annotations'):
            parent = osp.join(out_dir, kind)
            if osp.isdir(parent) and not os.listdir(parent):
                os.rmdir(parent)
        raise


def check_window(crop: int, stride: int) -> None:
    """Raise ``ValueError`` unless ``0 < stride <= crop``: windows then
    cover an axis without gaps."""
    if crop <= 0 or stride <= 0:
        raise ValueError(
            f'crop size and stride must be positive, got {crop}, {stride}')
    if stride > crop:
        raise ValueError(f'stride {stride} > crop size {crop} would leave '
                         'pixels in no crop')


def sliding_windows(length: int, crop: int, stride: int) -> List[int]:
    """Start offsets of crops along one axis, placed like mmseg's
    sliding-window inference: one every ``stride`` pixels, the last one moved
    back so that it ends at the border. An axis no longer than ``crop`` gives
    one window, the whole axis (it is not padded).

    Args:
        length (int): Size of the axis.
        crop (int): Window size.
        stride (int): Step between windows, ``0 < stride <= crop`` so that
            windows cover the axis without gaps.

    Returns:
        list[int]: Sorted offsets; window ``i`` is
        ``[o_i, min(o_i + crop, length))``.
    """
    check_window(crop, stride)
    if length <= crop:
        return [0]
    num = (length - crop + stride - 1) // stride + 1
    return [min(i * stride, length - crop) for i in range(num)]


def read_rgb(path: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB, palettes expanded, alpha dropped.

    EXIF orientation is ignored: masks carry none, so applying an image's
    would turn it against its mask.
    """
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ValueError(f'cannot read image {path}')
    return np.ascontiguousarray(image[..., ::-1])


def read_gray(path: str) -> np.ndarray:
    """``(H, W)`` uint8 single-channel image."""
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f'cannot read image {path}')
    return image


def check_same_size(img_path: str, image: np.ndarray, mask_path: str,
                    mask: np.ndarray) -> None:
    """Raise ``ValueError`` naming both files unless image and mask have the
    same height and width."""
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(
            f'{img_path} is {image.shape[1]}x{image.shape[0]} but its mask '
            f'{mask_path} is {mask.shape[1]}x{mask.shape[0]}')


def write_png(path: str, array: np.ndarray) -> None:
    """Write ``(H, W)`` grey/label or ``(H, W, 3)`` RGB losslessly, whole or
    not at all (:func:`~cait_mm.utils.atomic_write.write_bytes`)."""
    if array.ndim == 3:
        array = array[..., ::-1]
    ok, png = cv2.imencode('.png', np.ascontiguousarray(array))
    if not ok:
        raise OSError(f'cannot encode {path} as PNG')
    write_bytes(path, png.tobytes())


@dataclass
class SplitSummary:
    """What one split of a converted dataset holds.

    Pixel counts are over the source images, each pixel once, although
    overlapping crops write some of them more than once.
    """
    num_classes: int
    sources: int = 0
    samples: int = 0
    class_pixels: Optional[np.ndarray] = None
    ignore_pixels: int = 0

    def __post_init__(self):
        if self.class_pixels is None:
            self.class_pixels = np.zeros(self.num_classes, np.int64)

    def add_label(self, label: np.ndarray) -> None:
        """Count the pixels of one source label map ``(H, W)``."""
        counts = np.bincount(label.ravel(), minlength=IGNORE_INDEX + 1)
        self.class_pixels += counts[:self.num_classes]
        self.ignore_pixels += int(counts[IGNORE_INDEX])


@dataclass
class ConversionSummary:
    """Per-split summaries plus what a converter wants the user to know."""
    classes: Sequence[str]
    splits: Dict[str, SplitSummary] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def split(self, name: str) -> SplitSummary:
        if name not in self.splits:
            self.splits[name] = SplitSummary(len(self.classes))
        return self.splits[name]

    def format(self) -> str:
        width = max(len(c) for c in (*self.classes, 'ignore (255)'))
        lines = []
        for name, split in self.splits.items():
            total = int(split.class_pixels.sum()) + split.ignore_pixels
            lines.append(f'{name}: {split.sources} source images -> '
                         f'{split.samples} samples, {total} source pixels')
            rows = list(zip(self.classes, split.class_pixels.tolist()))
            rows.append(('ignore (255)', split.ignore_pixels))
            for cls, count in rows:
                share = 100.0 * count / max(total, 1)
                lines.append(f'  {cls:<{width}} {count:>11d} {share:6.2f}%')
        lines += self.notes
        return '\n'.join(lines)
