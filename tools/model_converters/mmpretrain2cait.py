"""Convert an mmpretrain checkpoint to CAITViT's key layout: a ViT or DeiT
classifier (local or by URL) or a bare ViT in mmpretrain's layout.

    python tools/model_converters/mmpretrain2cait.py SRC DST

The ViT's keys (under ``backbone.`` in a whole model) are renamed to
CAITViT's (timm/DeiT's) names; the other keys (heads, necks) are kept as
they are. DST is a plain state dict of tensors, e.g.::

    python tools/model_converters/mmpretrain2cait.py \\
        deit-small_pt-4xb256_in1k.pth deit_s.pth

CAITViT and ``load_from`` read the mmpretrain file as it is too
(docs/guides/byom.md); the converted file is for those who prefer one in
CAITViT's layout.
"""
import argparse

from cait_mm.models.backbones.vit_layouts import convert_checkpoint_file


def main():
    parser = argparse.ArgumentParser(
        description="Convert mmpretrain's ViT keys to CAITViT's")
    parser.add_argument('src', help='mmpretrain checkpoint (path or URL)')
    parser.add_argument('dst', help='output state dict')
    args = parser.parse_args()
    counts = convert_checkpoint_file(args.src, args.dst, 'mmpretrain')
    print(f'{args.dst}: {counts["converted"]} ViT tensors in CAITViT\'s '
          f'layout, {counts["kept"]} other tensors kept')


if __name__ == '__main__':
    main()
