"""Deterministic generator of the demo dataset: textured shapes on textured
backgrounds, written in ADE20K's folder layout and as COCO instances.

Every class has its own texture family (stripes at a class-specific angle,
checkers, dots ...) with random periods and phases, in colours around a class
hue (the background is greyish), so a small model trained from scratch learns
it in minutes on a CPU, yet the boundaries are only recoverable at full
resolution. Image ``i`` depends only on ``(seed, split, i)``.

Layout written under ``out_dir``::

    images/{training,validation}/demo_XXXXX.jpg
    annotations/{training,validation}/demo_XXXXX.png   # class index per pixel
    annotations/instances_{training,validation}.json  # COCO, RLE masks
"""
import colorsys
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from cait_mm.utils.atomic_write import write_bytes, write_text

CLASSES = ('background', 'disc', 'square', 'triangle', 'ring', 'cross')
PALETTE = [[0, 0, 0], [220, 20, 60], [0, 128, 255], [255, 200, 0],
           [0, 190, 90], [170, 60, 255]]
SPLITS = {'training': 1, 'validation': 2}


def _smooth_noise(rng: np.random.Generator, h: int, w: int,
                  cells: int) -> np.ndarray:
    """Low-frequency noise in ``[0, 1]``, ``(h, w)``."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _colours(rng: np.random.Generator, cls: int) -> np.ndarray:
    """Two RGB colours ``(2, 3)``, a dark and a light one.

    Shapes take saturated colours around a class hue; the background takes
    greyish colours of any hue. Colour alone is thus a strong but not a
    perfect cue: dark shades of different hues come close.
    """
    if cls == 0:
        hue = rng.uniform(0, 1)
        sat = rng.uniform(0, 0.3)
    else:
        hue = (cls - 1) / (len(CLASSES) - 1) + rng.uniform(-0.05, 0.05)
        sat = rng.uniform(0.55, 1)
    values = (rng.uniform(0.25, 0.55), rng.uniform(0.7, 1))
    rgb = [colorsys.hsv_to_rgb(hue % 1, sat, v) for v in values]
    return np.array(rgb, np.float32) * 255


def _texture(rng: np.random.Generator, cls: int, h: int,
             w: int) -> np.ndarray:
    """A ``(h, w, 3)`` float image of class ``cls``'s texture family."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(6, 12)
    phase = rng.uniform(0, 2 * np.pi)
    if cls == 0:  # background: smooth blotches plus fine grain
        pattern = _smooth_noise(rng, h, w, int(rng.integers(3, 7)))
        pattern = 0.8 * pattern + 0.2 * rng.random((h, w), dtype=np.float32)
    elif cls == 1:  # horizontal stripes
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * yy / period + phase)
    elif cls == 2:  # checkerboard
        pattern = ((xx // (period / 2) + yy // (period / 2)) % 2)
    elif cls == 3:  # diagonal stripes
        pattern = 0.5 + 0.5 * np.sign(
            np.sin(2 * np.pi * (xx + yy) / (1.4 * period) + phase))
    elif cls == 4:  # dots
        cx = np.mod(xx + phase, period) - period / 2
        cy = np.mod(yy + phase, period) - period / 2
        pattern = (cx**2 + cy**2 < (period / 3.2)**2).astype(np.float32)
    elif cls == 5:  # vertical stripes
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * xx / period + phase)
    else:
        raise ValueError(f'No texture for class {cls}')
    colours = _colours(rng, cls)
    pattern = pattern[..., None]
    return colours[0] * (1 - pattern) + colours[1] * pattern


def _shape_mask(rng: np.random.Generator, cls: int, h: int,
                w: int) -> np.ndarray:
    """A boolean ``(h, w)`` mask of one shape of class ``cls``."""
    mask = np.zeros((h, w), np.uint8)
    scale = min(h, w)
    r = rng.uniform(0.09, 0.2) * scale
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    angle = rng.uniform(0, 2 * np.pi)
    centre = (int(round(cx)), int(round(cy)))
    if cls == 1:
        cv2.circle(mask, centre, int(round(r)), 1, -1)
    elif cls in (2, 3):
        n = 4 if cls == 2 else 3
        t = angle + 2 * np.pi * np.arange(n) / n
        pts = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    elif cls == 4:
        cv2.circle(mask, centre, int(round(r)), 1, -1)
        cv2.circle(mask, centre, int(round(r * 0.5)), 0, -1)
    elif cls == 5:
        arm = r * 0.35
        for a in (angle, angle + np.pi / 2):
            d = np.array([np.cos(a), np.sin(a)])
            n = np.array([-d[1], d[0]])
            pts = np.stack([
                np.array([cx, cy]) + sx * r * d + sy * arm * n
                for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
            ])
            cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    else:
        raise ValueError(f'No shape for class {cls}')
    return mask.astype(bool)


def render_scene(seed: int, split: str, index: int,
                 size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray,
                                                 List[Tuple[int, np.ndarray]]]:
    """Render one scene.

    Returns:
        tuple: ``image (H, W, 3) uint8`` (RGB), ``label (H, W) uint8`` with
        class indices, and the instances as ``(class, visible_mask)``, in
        drawing order (later ones occlude earlier ones).
    """
    h, w = size
    rng = np.random.default_rng([seed, SPLITS[split], index])
    image = _texture(rng, 0, h, w)
    label = np.zeros((h, w), np.uint8)
    owner = np.full((h, w), -1, np.int64)
    drawn = []
    for k in range(int(rng.integers(2, 6))):
        cls = int(rng.integers(1, len(CLASSES)))
        mask = _shape_mask(rng, cls, h, w)
        image[mask] = _texture(rng, cls, h, w)[mask]
        label[mask] = cls
        owner[mask] = k
        drawn.append(cls)
    image += rng.normal(0, 6, size=image.shape)
    instances = [(cls, owner == k) for k, cls in enumerate(drawn)]
    instances = [(cls, m) for cls, m in instances if m.sum() >= 16]
    return image.clip(0, 255).astype(np.uint8), label, instances


def _coco_annotation(ann_id: int, image_id: int, cls: int,
                     mask: np.ndarray) -> Dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    x, y, bw, bh = mask_utils.toBbox(rle).tolist()
    rle['counts'] = rle['counts'].decode('ascii')
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=cls,
        segmentation=rle,
        area=float(mask.sum()),
        bbox=[x, y, bw, bh],
        iscrowd=0)


def generate_demo_dataset(out_dir: str,
                          seed: int = 0,
                          num_train: int = 240,
                          num_val: int = 48,
                          size: Sequence[int] = (256, 256)) -> Dict[str, int]:
    """Write the demo dataset under ``out_dir``; return images per split."""
    counts = {'training': num_train, 'validation': num_val}
    categories = [
        dict(id=i, name=name) for i, name in enumerate(CLASSES) if i > 0
    ]
    for split, num in counts.items():
        img_dir = osp.join(out_dir, 'images', split)
        ann_dir = osp.join(out_dir, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        images, annotations = [], []
        for i in range(num):
            image, label, instances = render_scene(seed, split, i, size)
            name = f'demo_{i:05d}'
            jpg = cv2.imencode('.jpg', np.ascontiguousarray(
                image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
            write_bytes(osp.join(img_dir, name + '.jpg'), jpg.tobytes())
            write_bytes(osp.join(ann_dir, name + '.png'),
                        cv2.imencode('.png', label)[1].tobytes())
            images.append(
                dict(id=i, file_name=name + '.jpg', height=size[0],
                     width=size[1]))
            for cls, mask in instances:
                annotations.append(
                    _coco_annotation(len(annotations) + 1, i, cls, mask))
        write_text(
            osp.join(out_dir, 'annotations', f'instances_{split}.json'),
            json.dumps(dict(images=images, annotations=annotations,
                            categories=categories)))
    return counts
