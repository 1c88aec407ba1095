"""ISBI 2012 EM membranes to mmseg's layout.

Source layout (as in the public ``zhixuhao/unet`` copy)::

    SRC/images/{0..29}.png   # 512x512 grey EM slices
    SRC/labels/{0..29}.png   # 0 = membrane, 255 = cell interior

Written: ``images/{split}/NN.png`` (the slice, copied byte for byte) and
``annotations/{split}/NN.png`` with class 0 = membrane, 1 = cell interior.
The split is fixed: slices 0-23 train, 24-29 validate.
"""
import os
import os.path as osp
import shutil

import numpy as np

from .common import (ConversionSummary, check_same_size, layout_for_writing,
                     read_gray, write_png)

CLASSES = ('membrane', 'cell interior')
# The source masks' own grey levels, so painted predictions look like them.
PALETTE = [[0, 0, 0], [255, 255, 255]]
SPLIT_IDS = {'training': range(0, 24), 'validation': range(24, 30)}
# Masks are 0/255; a grey value (anti-aliasing, lossy re-saving) goes to the
# nearer of the two.
THRESHOLD = 128


def mask_to_label(mask: np.ndarray) -> np.ndarray:
    """Class ids from a membrane mask.

    Args:
        mask (np.ndarray): ``(H, W)`` uint8, 0 = membrane, 255 = cell
            interior; values in between go to the nearer class.

    Returns:
        np.ndarray: ``(H, W)`` uint8, 0 = membrane, 1 = cell interior.
    """
    if mask.ndim != 2:
        raise ValueError(f'expected a (H, W) mask, got shape {mask.shape}')
    return (mask >= THRESHOLD).astype(np.uint8)


def convert_isbi_membrane(src: str,
                          out: str,
                          overwrite: bool = False) -> ConversionSummary:
    """Convert ``src`` (see the module docstring) into ``out``.

    Raises:
        FileNotFoundError: Slices of the fixed split are missing (all are
            named at once).
        ValueError: A slice and its mask differ in size.
    """
    pairs = {
        split: [(i, *(osp.join(src, sub, f'{i}.png')
                      for sub in ('images', 'labels'))) for i in ids]
        for split, ids in SPLIT_IDS.items()
    }
    missing = [
        path for items in pairs.values() for _, *paths in items
        for path in paths if not osp.isfile(path)
    ]
    if missing:
        raise FileNotFoundError(
            f'{len(missing)} files of the ISBI membrane split are missing '
            f'under {src}: {", ".join(missing[:6])}' +
            (' ...' if len(missing) > 6 else ''))

    summary = ConversionSummary(CLASSES)
    with layout_for_writing(out, overwrite) as dirs:
        grey = 0
        for split, items in pairs.items():
            stats = summary.split(split)
            for i, img_path, mask_path in items:
                image, mask = read_gray(img_path), read_gray(mask_path)
                check_same_size(img_path, image, mask_path, mask)
                grey += int(((mask != 0) & (mask != 255)).sum())
                label = mask_to_label(mask)
                shutil.copyfile(
                    img_path, osp.join(dirs['images', split], f'{i:02d}.png'))
                write_png(
                    osp.join(dirs['annotations', split], f'{i:02d}.png'),
                    label)
                stats.sources += 1
                stats.samples += 1
                stats.add_label(label)

    used = {f'{i}.png' for ids in SPLIT_IDS.values() for i in ids}
    unused = sorted(set(os.listdir(osp.join(src, 'images'))) - used)
    summary.notes.append(
        f'mask values other than 0/255 (thresholded at {THRESHOLD}): '
        f'{grey} pixels')
    if unused:
        summary.notes.append(
            f'not in the fixed split, not converted: {", ".join(unused)}')
    return summary
