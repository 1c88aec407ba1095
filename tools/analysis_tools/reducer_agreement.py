"""Training-free token reducers on a classifier: how often each one keeps
the dense model's top-1 class, at equal block FLOPs.

    python tools/analysis_tools/reducer_agreement.py CONFIG_OR_CKPT IMAGE_DIR
        [--checkpoint CKPT] [--flops 0.5 0.35]
        [--reducers ATME ATMEAdaptive ToMe EViT TPS] [--size 224]
        [--num-heads N] [--limit N] [--out-dir work_dirs/agreement]

CONFIG_OR_CKPT is either a classifier config (e.g. the ImageNet stage's
``configs/imagenet/deit-t_in1k.py``, with ``--checkpoint`` its trained
weights) or a timm/DeiT classifier checkpoint file (``head.weight`` and
``blocks.N...`` keys; the arch follows from the widths, the heads from
``--num-heads`` or DeiT's 64 channels per head). Every image of IMAGE_DIR is
resized to ``--size`` and normalised (the config's data preprocessor, or
ImageNet's mean and std). For every FLOPs target, each reducer is set with
its own ``for_flops`` (ATME and ATMEAdaptive: a schedule, ToMe ``r``, EViT and
TPS a keep ratio) and put into the dense model without training; the
table gives its top-1 agreement with the dense model and the mean
KL(dense || reduced) of the class probabilities. The table is printed and
written to ``--out-dir`` as JSON and Markdown.
"""
import argparse
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from cait_mm.core import TOKEN_REDUCERS, build_token_reducer

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255
IMAGENET_STD = (58.395, 57.12, 57.375)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', metavar='CONFIG_OR_CKPT')
    parser.add_argument('image_dir')
    parser.add_argument('--checkpoint',
                        help='weights of a config\'s classifier')
    parser.add_argument('--flops', type=float, nargs='+', default=[0.5, .35],
                        help='block-FLOPs targets, fractions of the dense')
    parser.add_argument('--reducers', nargs='+',
                        default=['ATME', 'ATMEAdaptive', 'ToMe', 'EViT',
                                 'TPS'],
                        choices=sorted(TOKEN_REDUCERS))
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--num-heads', type=int,
                        help='heads of a timm checkpoint (default: embed '
                        'dims / 64, as DeiT)')
    parser.add_argument('--limit', type=int, help='first N images only')
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--out-dir', default='work_dirs/agreement')
    return parser.parse_args()


class TimmClassifier(nn.Module):
    """A timm/DeiT classifier file as ``CAITViT`` (class token out) plus its
    linear head: the reducer slot of the project's backbone, the file's
    weights."""

    def __init__(self, path: str, num_heads=None):
        super().__init__()
        from cait_mm.models import CAITViT
        from cait_mm.models.backbones.vit_checkpoint import unwrap_state_dict
        state = unwrap_state_dict(torch.load(path, map_location='cpu',
                                             weights_only=True))
        if 'head.weight' not in state:
            raise KeyError(f'{path} has no classifier head ("head.weight"); '
                           f'keys: {sorted(state)[:8]}...')
        dims = state['cls_token'].shape[-1]
        layers = 1 + max(int(k.split('.')[1]) for k in state
                         if k.startswith('blocks.'))
        hidden = state['blocks.0.mlp.fc1.weight'].shape[0]
        patch = state['patch_embed.proj.weight'].shape[-1]
        arch = dict(embed_dims=dims, num_layers=layers,
                    num_heads=num_heads or max(dims // 64, 1),
                    mlp_ratio=hidden / dims)
        self.backbone = CAITViT(arch=arch, patch_size=patch,
                                out_type='cls_token', final_norm=True,
                                pretrained=path)
        self.backbone.init_weights()
        self.head = nn.Linear(dims, state['head.weight'].shape[0])
        self.head.load_state_dict({'weight': state['head.weight'],
                                   'bias': state['head.bias']})
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def normalise(self, rgb: Tensor) -> Tensor:
        return (rgb - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x)[-1])


class ConfigClassifier(nn.Module):
    """An mmpretrain classifier built from a config (the ImageNet stage's)
    and its checkpoint; logits from its tensor forward."""

    def __init__(self, config: str, checkpoint=None):
        super().__init__()
        from cait_mm.analysis.model_from_config import build_model
        self.model = build_model(config, checkpoint=checkpoint)
        self.backbone = self.model.backbone

    def normalise(self, rgb: Tensor) -> Tensor:
        pre = self.model.data_preprocessor
        if getattr(pre, '_enable_normalize', True):
            rgb = (rgb - pre.mean) / pre.std
        return rgb

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x, mode='tensor')


def load_images(image_dir: str, size: int, limit=None) -> Tuple[List, Tensor]:
    """Image names and RGB ``(N, 3, size, size)`` float 0-255."""
    names = sorted(f for f in os.listdir(image_dir)
                   if f.lower().endswith(IMAGE_EXTS))[:limit]
    if not names:
        raise FileNotFoundError(f'No image ({", ".join(IMAGE_EXTS)}) in '
                                f'{image_dir}')
    images = []
    for name in names:
        bgr = cv2.imread(osp.join(image_dir, name), cv2.IMREAD_COLOR)
        rgb = cv2.resize(bgr, (size, size),
                         interpolation=cv2.INTER_AREA)[..., ::-1]
        images.append(torch.from_numpy(np.ascontiguousarray(rgb)))
    return names, torch.stack(images).permute(0, 3, 1, 2).float()


def logits_of(model: Callable, x: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).float()
                          for i in range(0, len(x), batch_size)])


def compare(dense: Tensor, reduced: Tensor) -> Dict[str, float]:
    """Top-1 agreement (%) and mean KL(dense || reduced) of two logit
    sets ``(N, classes)``."""
    agree = (dense.argmax(1) == reduced.argmax(1)).float().mean().item()
    log_p, log_q = dense.log_softmax(1), reduced.log_softmax(1)
    kl = (log_p.exp() * (log_p - log_q)).sum(1).mean().item()
    return dict(agreement=100 * agree, kl=kl)


def run(model: nn.Module, x: Tensor, targets, reducers,
        batch_size: int = 16) -> List[Dict]:
    """Rows ``dict(reducer, target, config, block_flops, agreement, kl)``
    for every target and reducer; the dense model's own row first."""
    vit = model.backbone
    grid = (x.shape[-2] // vit.patch_size, x.shape[-1] // vit.patch_size)
    arch = vit.compression_spec().arch
    dims, layers = arch['embed_dims'], arch['num_layers']
    ratio = arch['mlp_ratio']
    own = vit.token_reducer
    vit.token_reducer = None
    dense = logits_of(model, x, batch_size)
    rows = [dict(reducer='dense', target=1.0, config=None,
                 block_flops=1.0, **compare(dense, dense))]
    try:
        for target in targets:
            for kind in reducers:
                cfg = TOKEN_REDUCERS[kind].for_flops(target, grid, layers,
                                                     dims, ratio)
                reducer = build_token_reducer(cfg, layers, dims)
                vit.token_reducer = reducer
                rows.append(dict(
                    reducer=kind, target=target, config=cfg,
                    block_flops=reducer.flops_fraction(grid, ratio),
                    **compare(dense, logits_of(model, x, batch_size))))
    finally:
        vit.token_reducer = own
    return rows


def markdown(rows: List[Dict], num_images: int) -> str:
    lines = [f'Top-1 agreement with the dense model on {num_images} images, '
             'training-free, equal block FLOPs', '',
             '| reducer | target | block FLOPs | top-1 agreement (%) | '
             'KL(dense‖reduced) |', '| --- | ---: | ---: | ---: | ---: |']
    for r in rows:
        lines.append(f"| {r['reducer']} | {r['target']:.2f} | "
                     f"{r['block_flops']:.3f} | {r['agreement']:.1f} | "
                     f"{r['kl']:.4f} |")
    return '\n'.join(lines) + '\n'


def main():
    args = parse_args()
    if args.model.endswith('.py'):
        model = ConfigClassifier(args.model, args.checkpoint)
    else:
        model = TimmClassifier(args.model, args.num_heads)
    model.eval()
    names, rgb = load_images(args.image_dir, args.size, args.limit)
    rows = run(model, model.normalise(rgb), args.flops, args.reducers,
               args.batch_size)
    table = markdown(rows, len(names))
    print(table)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'agreement.json'), 'w') as f:
        json.dump(dict(model=args.model, checkpoint=args.checkpoint,
                       images=names, size=args.size, rows=rows), f,
                  indent=1)
    with open(osp.join(args.out_dir, 'agreement.md'), 'w') as f:
        f.write(table)


if __name__ == '__main__':
    main()
