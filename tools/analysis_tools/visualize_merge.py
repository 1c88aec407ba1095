"""Draw which patches a token reducer merged, over the input image.

    python tools/analysis_tools/visualize_merge.py CONFIG IMAGE
        [--checkpoint CKPT] [--blocks 2 5 8 11] [--shape H W] [--out merge.png]
        [--cfg-options k=v ...]

One panel per chosen block: patches that are held by the same token share a
tint and are outlined together, for any token reducer (read from its source
map): ATME's row/column merges, ATMEAdaptive's connected groups, TPS's
hosts, ToMe's matched pairs, EViT's fused token. Merges follow attention
keys, so use trained weights
(``--checkpoint``; a dense checkpoint with ATME from the config or
``--cfg-options model.backbone.token_reducer.type=ATME
model.backbone.token_reducer.schedule=deit-s`` shows the training-free
behaviour); without one the weights are random.
"""
import argparse
import os.path as osp

import cv2
import numpy as np
import torch
from mmengine.config import DictAction

from cait_mm.analysis.model_from_config import build_model
from cait_mm.utils.atomic_write import write_bytes


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('image')
    parser.add_argument('--checkpoint')
    parser.add_argument('--blocks', type=int, nargs='+', default=None,
                        help='blocks to draw (default: out_indices)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='resize the image first')
    parser.add_argument('--out', default='merge.png')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def normalise(model, image: np.ndarray) -> torch.Tensor:
    """BGR ``(H, W, 3)`` uint8 -> the model's normalised ``(1, 3, H, W)``,
    as its data preprocessor would do it."""
    pre = model.data_preprocessor
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if getattr(pre, '_channel_conversion', False) or \
            getattr(pre, 'channel_conversion', False):
        x = x[[2, 1, 0]]
    x = x.float()
    if getattr(pre, '_enable_normalize', True):
        x = (x - pre.mean) / pre.std
    return x[None]


def token_groups(model, x: torch.Tensor, blocks):
    """Per block: ``(group id per patch (H0, W0), number of tokens)``."""
    backbone = model.backbone
    groups = {}
    with torch.no_grad():
        tokens, state = backbone.embed(x)
        for i, tokens, state in backbone.run_blocks(tokens, state):
            if i in blocks:
                H0, W0 = state.grid_size
                source = torch.arange(H0 * W0) if state.source is None \
                    else state.source[0]
                groups[i] = (source.view(H0, W0).numpy(),
                             tokens.shape[1] - backbone.num_prefix)
    return groups


def draw(image: np.ndarray, group: np.ndarray, patch: int,
         title: str) -> np.ndarray:
    H, W = image.shape[:2]
    cells = np.kron(group, np.ones((patch, patch), group.dtype))[:H, :W]
    rng = np.random.default_rng(0)
    colours = rng.integers(40, 255, size=(group.max() + 1, 3))
    panel = (0.6 * image + 0.4 * colours[cells]).astype(np.uint8)
    edges = np.zeros((H, W), bool)
    edges[1:] |= cells[1:] != cells[:-1]
    edges[:, 1:] |= cells[:, 1:] != cells[:, :-1]
    panel[edges] = (255, 255, 255)
    cv2.putText(panel, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def main():
    args = parse_args()
    model = build_model(args.config, args.cfg_options, 'cpu',
                        args.checkpoint)
    image = cv2.imread(args.image)
    if image is None:
        raise FileNotFoundError(f'Cannot read image "{args.image}"')
    if args.shape:
        image = cv2.resize(image, tuple(args.shape[::-1]))
    blocks = args.blocks if args.blocks is not None else \
        list(model.backbone.out_indices)
    bad = [b for b in blocks if not 0 <= b < model.backbone.num_layers]
    if bad:
        raise ValueError(f'--blocks {bad} out of range for '
                         f'{model.backbone.num_layers} blocks')
    groups = token_groups(model, normalise(model, image), set(blocks))
    patch = model.backbone.patch_size
    panels = [
        draw(image, groups[b][0], patch, f'block {b}: {groups[b][1]} tokens')
        for b in blocks
    ]
    ok, png = cv2.imencode(osp.splitext(args.out)[1] or '.png',
                           np.concatenate(panels, axis=1))
    if not ok:
        raise ValueError(f'cannot write an image as {args.out}')
    write_bytes(args.out, png.tobytes())
    print(f'saved {args.out}: ' + ', '.join(
        f'block {b} {groups[b][1]} tokens' for b in blocks))


if __name__ == '__main__':
    main()
