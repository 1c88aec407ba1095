"""Token reducers at equal FLOPs: each one's setting for a block-FLOPs target.

    python tools/analysis_tools/match_flops.py --target 0.5 [--arch deit-s]
        [--shape 512 512] [--reducers ATME ATMEAdaptive TPS ToMe EViT]
        [--max-points 2]

For every reducer, the config (ready for ``model.backbone.token_reducer``)
whose analytic block FLOPs are the closest to TARGET, a fraction of the
dense ViT's (ATME: at most the target; the others: within a few tenths of a
percent), and the patch tokens after each block. Each reducer tunes one
knob: ATME and ATMEAdaptive their schedule (``--max-points`` caps their
merging blocks), ToMe ``r``, TPS and EViT their keep ratio.
``tools/analysis_tools/benchmark.py CONFIG --flops-target TARGET`` times the
same rows; ``tools/analysis_tools/atme_schedule.py --schedule S`` shows what
an ATME schedule does to the token grid.
"""
import argparse

from cait_mm.core import TOKEN_REDUCERS, match_flops
from cait_mm.core.spec import ARCHS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--target', type=float, required=True,
                        help='fraction of the dense block FLOPs, in (0, 1)')
    parser.add_argument('--arch', default='deit-s', choices=sorted(ARCHS))
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512),
                        metavar=('H', 'W'))
    parser.add_argument('--patch-size', type=int, default=16)
    parser.add_argument('--reducers', nargs='+',
                        default=['ATME', 'ATMEAdaptive', 'TPS', 'ToMe',
                                 'EViT'],
                        choices=sorted(TOKEN_REDUCERS))
    parser.add_argument('--max-points', type=int,
                        help='ATME: at most this many merging blocks (2 '
                        'suits GPUs: each merge costs kernel launches)')
    return parser.parse_args()


def main():
    args = parse_args()
    grid = tuple(-(-s // args.patch_size) for s in args.shape)
    print(f'{args.arch}, {grid[0]}x{grid[1]} patches, target {args.target} '
          'of the dense block FLOPs')
    settings = {kind: dict(max_points=args.max_points)
                for kind in ('ATME', 'ATMEAdaptive')}
    for match in match_flops(args.target, grid, ARCHS[args.arch],
                             args.reducers, settings):
        print(f'\n{match.kind}: token_reducer={match.config}')
        print(f'  block FLOPs {match.fraction:.4f}; patch tokens after '
              f'each block: {match.token_counts}')


if __name__ == '__main__':
    main()
