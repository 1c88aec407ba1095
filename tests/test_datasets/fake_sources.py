"""Tiny stand-ins for the real source datasets, in their layouts and label
conventions (tests never read the real data)."""
import os
import os.path as osp

import cv2
import numpy as np
from PIL import Image

from cait_mm.datasets.converters.dubai_aerial import COLOURS

# (height, width) per Dubai tile: some larger than the tests' 32-pixel crops
# along both axes, some along one only, tile 2 smaller than a crop (like the
# real 509-wide tile 2 against 512 crops).
DUBAI_SIZES = {
    1: (50, 70),
    2: (30, 28),
    3: (33, 64),
    4: (64, 40),
    5: (32, 32),
    6: (45, 45),
    7: (70, 50),
    8: (41, 96)
}
UNKNOWN = ((0, 0, 0), (1, 2, 3))


def write_isbi_source(root, size=(40, 48), ids=range(30), seed=0):
    """``root/images/{i}.png`` grey slices and ``root/labels/{i}.png`` 0/255
    masks; slice 5's mask also has grey values (100 -> membrane, 200 ->
    cell interior). Returns ``{i: expected (H, W) class ids}``."""
    rng = np.random.default_rng(seed)
    for sub in ('images', 'labels'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    expected = {}
    for i in ids:
        image = rng.integers(0, 256, size, dtype=np.uint8)
        label = (rng.random(size) < 0.7).astype(np.uint8)
        mask = label * 255
        if i == 5:
            mask[0, :4] = (100, 200, 100, 200)
            label[0, :4] = (0, 1, 0, 1)
        cv2.imwrite(osp.join(root, 'images', f'{i}.png'), image)
        cv2.imwrite(osp.join(root, 'labels', f'{i}.png'), mask)
        expected[i] = label
    return expected


def write_dubai_source(root,
                       sizes=DUBAI_SIZES,
                       names=('image_part_001', ),
                       seed=0):
    """``root/tile_T/images/NAME.jpg`` and ``root/tile_T/masks/NAME.png``
    colour masks. Tile 2's masks are palette PNGs (as in the real data),
    the others RGB; some pixels have unknown colours (:data:`UNKNOWN`).

    Returns:
        dict: ``(tile, name) -> expected (H, W) class ids`` (255 where the
        colour is unknown), and ``'unknown'`` -> pixel count per unknown
        colour and split.
    """
    rng = np.random.default_rng(seed)
    palette = np.array(COLOURS + UNKNOWN, np.uint8)
    expected = {'unknown': {'training': {}, 'validation': {}}}
    for tile, (h, w) in sizes.items():
        for sub in ('images', 'masks'):
            os.makedirs(osp.join(root, f'tile_{tile}', sub), exist_ok=True)
        for name in names:
            index = rng.integers(0, len(COLOURS), (h, w))
            index[rng.random((h, w)) < 0.05] = len(COLOURS)  # black
            index[0, 0] = len(COLOURS) + 1
            split = 'training' if tile <= 6 else 'validation'
            for k, colour in enumerate(UNKNOWN):
                counts = expected['unknown'][split]
                counts[colour] = counts.get(colour, 0) + int(
                    (index == len(COLOURS) + k).sum())
            label = np.where(index < len(COLOURS), index, 255).astype(np.uint8)
            expected[tile, name] = label
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            cv2.imwrite(
                osp.join(root, f'tile_{tile}', 'images', name + '.jpg'), image)
            mask_path = osp.join(root, f'tile_{tile}', 'masks', name + '.png')
            if tile == 2:
                mask = Image.fromarray(index.astype(np.uint8), mode='P')
                mask.putpalette(palette.ravel().tolist())
                mask.save(mask_path)
            else:
                cv2.imwrite(mask_path, palette[index][..., ::-1])
    return expected
