"""Convert the Dubai aerial tiles to mmseg's layout, in overlapping crops.

    python tools/dataset_converters/dubai_aerial.py --src SRC \
        [--out data/dubai_aerial] [--crop-size 512] [--stride 384] \
        [--val-stride CROP_SIZE] [--overwrite]

SRC holds tile_1..tile_8, each with images/*.jpg and masks/*.png (RGB
colours). Writes images/ and annotations/ with training/ (tiles 1-6) and
validation/ (tiles 7-8); labels 0-5 = building, land, road, vegetation,
water, unlabeled; unknown colours 255 (ignored). Nothing is downloaded.
"""
import argparse

from cait_mm.datasets.converters import convert_dubai_aerial
from cait_mm.datasets.converters.dubai_aerial import (DEFAULT_CROP,
                                                      DEFAULT_STRIDE)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--src', required=True, help='source folder')
    parser.add_argument(
        '--out', default='data/dubai_aerial', help='dataset root to write')
    parser.add_argument(
        '--crop-size',
        type=int,
        default=DEFAULT_CROP,
        help='side of the square crops')
    parser.add_argument(
        '--stride',
        type=int,
        default=DEFAULT_STRIDE,
        help='step between training crops')
    parser.add_argument(
        '--val-stride',
        type=int,
        default=None,
        help='step between validation crops (default: the crop size, so '
        'that few pixels count twice in mIoU)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace an earlier conversion in --out')
    return parser.parse_args()


def main():
    args = parse_args()
    summary = convert_dubai_aerial(
        args.src,
        args.out,
        crop_size=args.crop_size,
        stride=args.stride,
        val_stride=args.val_stride,
        overwrite=args.overwrite)
    print(f'Wrote {args.out} ({args.crop_size}x{args.crop_size} crops)')
    print(summary.format())


if __name__ == '__main__':
    main()
