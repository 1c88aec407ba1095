"""Dubai aerial tiles ("Semantic segmentation of aerial imagery", MBRSC) to
mmseg's layout, cut into overlapping crops.

Source layout::

    SRC/tile_{1..8}/images/NAME.jpg   # RGB, 509x544 up to 2149x1479
    SRC/tile_{1..8}/masks/NAME.png    # RGB (or palette) colour per class

Mask colours are mapped to class ids with :data:`COLOURS` (the colours the
masks really use; the dataset's ``classes.json`` lists other ones); any
other colour, such as the few black pixels, becomes 255 (ignored).

Each image is cut into ``crop x crop`` windows placed like mmseg's
sliding-window inference (:func:`~.common.sliding_windows`); an axis no
longer than ``crop`` is kept whole, not padded. Crops are written as PNG,
images too, so the JPEG is decoded once and not compressed again:
``images/{split}/tile{T}_{NAME}_y{Y}_x{X}.png`` and the label map under the
same name in ``annotations/{split}``. Tiles 1-6 train, 7-8 validate.
"""
import os
import os.path as osp
from collections import Counter
from typing import Optional

import numpy as np

from .common import (IGNORE_INDEX, ConversionSummary, check_same_size,
                     check_window, layout_for_writing, read_rgb,
                     sliding_windows, write_png)

CLASSES = ('building', 'land', 'road', 'vegetation', 'water', 'unlabeled')
# RGB; also the palette, so painted predictions look like the masks.
COLOURS = ((60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58),
           (226, 169, 41), (155, 155, 155))
PALETTE = [list(c) for c in COLOURS]
SPLIT_TILES = {'training': range(1, 7), 'validation': range(7, 9)}
# Overlap augments training; in validation it would count the pixels of the
# overlap twice in mIoU, so there the default stride is the crop size (only
# the last window of an axis overlaps, to end at the border).
DEFAULT_CROP = 512
DEFAULT_STRIDE = 384


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def colours_to_label(mask: np.ndarray):
    """Class ids from an RGB colour mask.

    Args:
        mask (np.ndarray): ``(H, W, 3)`` uint8 RGB.

    Returns:
        tuple[np.ndarray, Counter]: ``(H, W)`` uint8 class ids (255 where
        the colour is none of :data:`COLOURS`), and the pixel count of each
        such unknown ``(r, g, b)`` colour.
    """
    if mask.ndim != 3 or mask.shape[2] != 3:
        raise ValueError(f'expected a (H, W, 3) mask, got shape {mask.shape}')
    packed = _pack(mask)
    label = np.full(packed.shape, IGNORE_INDEX, np.uint8)
    for cls, colour in enumerate(COLOURS):
        label[packed == _pack(np.array(colour))] = cls
    values, counts = np.unique(
        packed[label == IGNORE_INDEX], return_counts=True)
    unknown = Counter({
        (int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255): int(n)
        for v, n in zip(values, counts)
    })
    return label, unknown


def _tile_pairs(src: str, tile: int):
    """Sorted ``(name, image_path, mask_path)`` of one tile; every image
    needs its mask and every mask its image."""
    img_dir = osp.join(src, f'tile_{tile}', 'images')
    mask_dir = osp.join(src, f'tile_{tile}', 'masks')
    for path in (img_dir, mask_dir):
        if not osp.isdir(path):
            raise FileNotFoundError(f'{path} does not exist; expected '
                                    'tile_1..tile_8 with images/ and masks/')
    images = {
        osp.splitext(f)[0]: f
        for f in os.listdir(img_dir)
        if f.lower().endswith(('.jpg', '.jpeg', '.png'))
    }
    masks = {
        osp.splitext(f)[0]: f
        for f in os.listdir(mask_dir) if f.lower().endswith('.png')
    }
    if images.keys() != masks.keys():
        raise FileNotFoundError(
            f'tile_{tile}: images without a mask '
            f'{sorted(images.keys() - masks.keys())}, masks without an image '
            f'{sorted(masks.keys() - images.keys())}')
    if not images:
        raise FileNotFoundError(f'{img_dir} holds no images')
    return [(name, osp.join(img_dir, image), osp.join(mask_dir, masks[name]))
            for name, image in sorted(images.items())]


def _write_crops(stem: str, image: np.ndarray, label: np.ndarray, img_dir: str,
                 ann_dir: str, crop_size: int, stride: int) -> int:
    """Write the sliding-window crops of an ``(H, W, 3)`` image and its
    ``(H, W)`` label map as ``STEM_yY_xX.png``; return their number."""
    height, width = label.shape
    count = 0
    for y in sliding_windows(height, crop_size, stride):
        for x in sliding_windows(width, crop_size, stride):
            window = (slice(y, y + crop_size), slice(x, x + crop_size))
            name = f'{stem}_y{y:04d}_x{x:04d}.png'
            write_png(osp.join(img_dir, name), image[window])
            write_png(osp.join(ann_dir, name), label[window])
            count += 1
    return count


def convert_dubai_aerial(src: str,
                         out: str,
                         crop_size: int = DEFAULT_CROP,
                         stride: int = DEFAULT_STRIDE,
                         val_stride: Optional[int] = None,
                         overwrite: bool = False) -> ConversionSummary:
    """Convert ``src`` (see the module docstring) into ``out``.

    Args:
        src (str): Folder holding ``tile_1`` ... ``tile_8``.
        out (str): Dataset root to write.
        crop_size (int): Side of the square crops.
        stride (int): Step between training crops.
        val_stride (int, optional): Step between validation crops; defaults
            to ``crop_size``.
        overwrite (bool): Replace an earlier conversion in ``out``.

    Raises:
        FileNotFoundError: A tile folder, an image or a mask is missing.
        ValueError: An image and its mask differ in size.
    """
    strides = {
        'training': stride,
        'validation': crop_size if val_stride is None else val_stride
    }
    for step in strides.values():  # fail before anything is written
        check_window(crop_size, step)
    pairs = {
        split: [(tile, *pair) for tile in tiles
                for pair in _tile_pairs(src, tile)]
        for split, tiles in SPLIT_TILES.items()
    }

    summary = ConversionSummary(CLASSES)
    with layout_for_writing(out, overwrite) as dirs:
        for split, items in pairs.items():
            stats = summary.split(split)
            unknown = Counter()
            for tile, name, img_path, mask_path in items:
                image, mask = read_rgb(img_path), read_rgb(mask_path)
                check_same_size(img_path, image, mask_path, mask)
                label, tile_unknown = colours_to_label(mask)
                unknown.update(tile_unknown)
                stats.sources += 1
                stats.add_label(label)
                stats.samples += _write_crops(f'tile{tile}_{name}', image,
                                              label, dirs['images', split],
                                              dirs['annotations', split],
                                              crop_size, strides[split])
            if unknown:
                colours = ', '.join(f'{c}: {n}' for c, n in sorted(
                    unknown.items(), key=lambda item: (-item[1], item[0])))
                summary.notes.append(
                    f'{split}: unknown mask colours set to ignore (255): '
                    f'{colours}')

    tiles = {f'tile_{t}' for ts in SPLIT_TILES.values() for t in ts}
    others = sorted(
        d for d in os.listdir(src) if d.startswith('tile_') and d not in tiles)
    if others:
        summary.notes.append(
            f'not in the fixed split, not converted: {", ".join(others)}')
    return summary
