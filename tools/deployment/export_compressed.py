"""Export a CDCP-trained model as a physically smaller compressed checkpoint.

    python tools/deployment/export_compressed.py CONFIG CHECKPOINT OUT
        [--cfg-options k=v ...] [--drop teacher ...]

Builds CONFIG's model, loads CHECKPOINT strictly, folds every compactor into
the linear layer before it, removes the pruned channels, and writes OUT: all
weights (tensors only, loadable with ``torch.load(weights_only=True)``) and,
in ``meta['cait_mm']``, the backbone's compression spec (architecture,
per-block widths, token reducer) that rebuilds the compact backbone:
``CAITViT(compressed=OUT)``, and the widths of every channel-pruned head
(``CAITUPerHead``'s compactors are folded and its pruned channels removed
too; an auxiliary head keeps its weights).

OUT is written under a temporary name and renamed once it loads with
``torch.load(weights_only=True)``: a kill or an error leaves an earlier OUT
as it was.

Evaluate the exported model with the training config (tools/test.py sees
the metadata and builds the compact backbone from it):

    python tools/test.py CONFIG OUT
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction

from cait_mm.analysis.model_from_config import build_model
from cait_mm.models.backbones import export_compressed


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the config the model was trained with')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('out', help='compressed checkpoint to write')
    parser.add_argument(
        '--drop',
        nargs='+',
        default=(),
        help='top-level modules to leave out of the file (e.g. a teacher)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, xxx=yyy format')
    return parser.parse_args()


def _count(module):
    return sum(p.numel() for p in module.parameters())


def main():
    args = parse_args()
    model = build_model(args.config, args.cfg_options, 'cpu', args.checkpoint)
    before = {name: _count(m) for name, m in model.named_children()}
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    info = export_compressed(model, args.out, drop=tuple(args.drop))
    widths = info['spec']['channel_widths']
    for name in ['backbone', *info.get('heads', {})]:
        print(f'{name} params: {before[name] / 1e6:.3f} M -> '
              f'{_count(getattr(model, name)) / 1e6:.3f} M')
        if name == 'backbone':
            for i, width in enumerate(widths):
                print(f'  block {i}: ' +
                      ', '.join(f'{k}={v}' for k, v in width.items()))
        else:
            for kind, value in info['heads'][name]['channel_widths'].items():
                print(f'  {kind}: {value}')
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
