"""What an ATME schedule does to the token grid.

    python tools/analysis_tools/atme_schedule.py --arch deit-s \\
        --shape 224 224 --schedule deit-s
    python tools/analysis_tools/atme_schedule.py --arch deit-t \\
        --schedule "[(3,h,0.75),(4,v,0.75)]"

Prints the schedule (ready for ``token_reducer=dict(type='ATME',
schedule=...)``), its block FLOPs as a fraction of the dense model's
(analytic count, see ``cait_mm.core.atme_schedules.schedule_flops``) and the
token grid entering each block. For a schedule that meets a FLOPs budget:
``tools/analysis_tools/match_flops.py --reducers ATME --target 0.5``.
"""
import argparse

from mmengine.config import DictAction

from cait_mm.core.atme_schedules import (grid_shapes, parse_schedule,
                                         schedule_flops)
from cait_mm.core.spec import ARCHS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='deit-s',
                        choices=sorted(ARCHS))
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512),
                        metavar=('H', 'W'))
    parser.add_argument('--patch-size', type=int, default=16)
    parser.add_argument('--schedule', required=True,
                        help='a preset name or a list like "[(3,h,0.5)]"')
    return parser.parse_args()


def main():
    args = parse_args()
    arch = ARCHS[args.arch]
    grid = tuple(-(-s // args.patch_size) for s in args.shape)
    dims, layers = arch['embed_dims'], arch['num_layers']
    schedule = DictAction._parse_iterable(args.schedule)
    steps = parse_schedule(schedule, layers)
    fraction = schedule_flops(schedule, grid, dims, layers, arch['mlp_ratio'])
    entries = [(b, d, r) for b, (d, r) in sorted(steps.items())]
    print(f'schedule={entries}')
    print(f'block FLOPs: {fraction:.3f} of dense ({args.arch}, '
          f'{grid[0]}x{grid[1]} tokens)')
    shapes = grid_shapes(schedule, grid, layers)
    print('grid entering each block: ' + ', '.join(
        f'{i}:{h}x{w}' for i, (h, w) in enumerate(shapes[:-1])) +
          f'; after the last: {shapes[-1][0]}x{shapes[-1][1]}')


if __name__ == '__main__':
    main()
