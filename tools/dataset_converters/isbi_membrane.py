"""Convert the ISBI 2012 EM membrane slices to mmseg's layout.

    python tools/dataset_converters/isbi_membrane.py --src SRC \
        [--out data/isbi_membrane] [--overwrite]

SRC holds images/{0..29}.png and labels/{0..29}.png (0 = membrane, 255 =
cell interior). Writes images/ and annotations/ with training/ (slices 0-23)
and validation/ (24-29); labels 0 = membrane, 1 = cell interior. Nothing is
downloaded.
"""
import argparse

from cait_mm.datasets.converters import convert_isbi_membrane


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--src', required=True, help='source folder')
    parser.add_argument(
        '--out', default='data/isbi_membrane', help='dataset root to write')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace an earlier conversion in --out')
    return parser.parse_args()


def main():
    args = parse_args()
    summary = convert_isbi_membrane(args.src, args.out, args.overwrite)
    print(f'Wrote {args.out}')
    print(summary.format())


if __name__ == '__main__':
    main()
