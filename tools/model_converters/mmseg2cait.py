"""Convert an mmseg checkpoint to CAITViT's key layout: a whole segmentor
(e.g. a model-zoo ViT or DeiT UperNet, local or by URL) or a bare ViT in
mmseg's layout (vit2mmseg.py's output, mmseg's pretrained files).

    python tools/model_converters/mmseg2cait.py SRC DST

The ViT's keys (under ``backbone.`` in a whole model) are renamed to
CAITViT's (timm/DeiT's) names; the other keys (heads, necks) are kept as
they are. DST is a plain state dict of tensors, e.g.::

    python tools/model_converters/mmseg2cait.py \\
        vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.pth upernet_deit_s.pth

CAITViT and ``load_from`` read the mmseg file as it is too
(docs/guides/byom.md); the converted file is for those who prefer one in
CAITViT's layout.
"""
import argparse

from cait_mm.models.backbones.vit_layouts import convert_checkpoint_file


def main():
    parser = argparse.ArgumentParser(
        description="Convert mmseg's ViT keys to CAITViT's")
    parser.add_argument('src', help='mmseg checkpoint (path or URL)')
    parser.add_argument('dst', help='output state dict')
    args = parser.parse_args()
    counts = convert_checkpoint_file(args.src, args.dst, 'mmseg')
    print(f'{args.dst}: {counts["converted"]} ViT tensors in CAITViT\'s '
          f'layout, {counts["kept"]} other tensors kept')


if __name__ == '__main__':
    main()
