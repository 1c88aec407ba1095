"""Token reducers at equal FLOPs: each one's setting for a block-FLOPs target.

    python tools/analysis_tools/match_flops.py --target 0.5 [--arch deit-s]
        [--shape 512 512] [--reducers ATME ATMEAdaptive TPS ToMe EViT]

For every reducer, the config (ready for ``model.backbone.token_reducer``)
whose analytic block FLOPs are the closest to TARGET, a fraction of the
dense ViT's (ATME: at most the target; the others: within a few tenths of a
percent), and the patch tokens after each block. Each reducer tunes one
knob: ATME and ATMEAdaptive their schedule, ToMe ``r``, TPS and EViT their
keep ratio.
``tools/analysis_tools/benchmark.py CONFIG --flops-target TARGET`` times the same rows.
"""
import argparse

from cait_mm.core import TOKEN_REDUCERS, build_token_reducer
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
    return parser.parse_args()


def main():
    args = parse_args()
    arch = ARCHS[args.arch]
    grid = tuple(-(-s // args.patch_size) for s in args.shape)
    dims, layers, ratio = (arch['embed_dims'], arch['num_layers'],
                           arch['mlp_ratio'])
    print(f'{args.arch}, {grid[0]}x{grid[1]} patches, target {args.target} '
          'of the dense block FLOPs')
    for kind in args.reducers:
        cfg = TOKEN_REDUCERS[kind].for_flops(args.target, grid, layers, dims,
                                             ratio)
        reducer = build_token_reducer(cfg, layers, dims)
        print(f'\n{kind}: token_reducer={cfg}')
        print(f'  block FLOPs {reducer.flops_fraction(grid, ratio):.4f}; '
              'patch tokens after each block: '
              f'{reducer.token_counts(grid)}')


if __name__ == '__main__':
    main()
