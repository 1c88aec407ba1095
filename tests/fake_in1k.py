"""Stand-ins for ImageNet and the official DeiT files, made by the tests.

- :func:`make_image_folder`: a tiny image-classification set in the
  class-folder layout, ``root/{train,val}/class_<k>/<i>.png``, which
  mmpretrain's ``CustomDataset`` (and ``ImageNet`` without annotation lists)
  reads as it is. Each class is a colour and a stripe orientation, so the
  labels are learnable, with noise and a random phase so no two images are
  equal.
- :func:`write_timm_deit`: a small timm DeiT saved the way DeiT's releases
  are (``{'model': state_dict}`` of timm's ``deit_*_patch16_224``).
"""
import os
import os.path as osp

import cv2
import numpy as np
import timm
import torch

#: timm's DeiT with the arch overrides of a test-sized model.
TIMM_DEIT = 'deit_tiny_patch16_224'


def _image(rng: np.random.Generator, label: int, num_classes: int,
           size: int) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 BGR image of class ``label``."""
    hue = int(180 * label / num_classes)
    colour = cv2.cvtColor(np.uint8([[[hue, 200, 220]]]),
                          cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    angle = np.pi * label / num_classes
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    stripes = 0.5 + 0.5 * np.sin(
        (xx * np.cos(angle) + yy * np.sin(angle)) * 0.5 + phase)
    image = stripes[..., None] * colour + rng.normal(0, 12, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_image_folder(root: str,
                      num_classes: int = 6,
                      train_per_class: int = 4,
                      val_per_class: int = 2,
                      size: int = 64,
                      seed: int = 0) -> str:
    """Write the set under ``root``; return ``root``."""
    rng = np.random.default_rng(seed)
    for split, count in (('train', train_per_class), ('val', val_per_class)):
        for label in range(num_classes):
            folder = osp.join(root, split, f'class_{label}')
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                cv2.imwrite(
                    osp.join(folder, f'{i}.png'),
                    _image(rng, label, num_classes, size))
    return root


def timm_deit_kwargs(arch: dict, img_size: int, num_classes: int,
                     patch_size: int = 16) -> dict:
    """``timm.create_model`` overrides for a CAITViT ``arch`` dict."""
    return dict(
        img_size=img_size,
        patch_size=patch_size,
        embed_dim=arch['embed_dims'],
        depth=arch['num_layers'],
        num_heads=arch['num_heads'],
        mlp_ratio=arch['mlp_ratio'],
        num_classes=num_classes)


def write_timm_deit(path: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """Save a randomly initialised timm DeiT (``kwargs`` go to
    ``timm.create_model``) as ``{'model': state_dict}``; return it in eval
    mode."""
    torch.manual_seed(seed)
    model = timm.create_model(TIMM_DEIT, pretrained=False, **kwargs)
    torch.save({'model': model.state_dict()}, path)
    return model.eval()
