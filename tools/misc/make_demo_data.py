"""Generate the demo dataset (textured shapes), deterministically from a seed.

    python tools/misc/make_demo_data.py --out data/demo_shapes [--seed 0]
        [--num-train 240] [--num-val 48] [--size 256 256]

Writes ADE20K's folder layout (images/ and annotations/ with training/ and
validation/) for segmentation, and the same scenes as COCO instance json
(annotations/instances_{training,validation}.json) for detection.
"""
import argparse

from cait_mm.datasets.demo_shapes_generator import (CLASSES,
                                                    generate_demo_dataset)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/demo_shapes')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=240)
    parser.add_argument('--num-val', type=int, default=48)
    parser.add_argument(
        '--size', type=int, nargs=2, default=(256, 256), metavar=('H', 'W'))
    return parser.parse_args()


def main():
    args = parse_args()
    counts = generate_demo_dataset(
        args.out,
        seed=args.seed,
        num_train=args.num_train,
        num_val=args.num_val,
        size=tuple(args.size))
    print(f'Wrote {counts} images of {len(CLASSES)} classes {CLASSES} '
          f'to {args.out}')


if __name__ == '__main__':
    main()
