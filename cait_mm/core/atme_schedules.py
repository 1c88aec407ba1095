"""ATME merge schedules: presets, parsing and validation.

A schedule maps blocks to ``(direction, ratio)``: after the attention of that
block, merge along ``'h'`` (each row loses tokens) or ``'v'`` (each column
does) ``ratio`` of the candidate pairs of every line. Ratios make one schedule
fit any input size (224 -> 14x14, 512 -> 32x32, 800x1344 -> 50x84).
"""
from itertools import product
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .flops_budget import block_flops_fraction

DIRECTIONS = ('h', 'v')

# Blocks 0-2 stay unmerged, so the first dense feature map (out index 2 in
# UperNet) is exact; then HTM and VTM alternate, each merging half of the
# candidate pairs. Block FLOPs (schedule_flops): deit-t 0.52 / 0.52,
# deit-s and deit-b 0.50 / 0.48 of the dense model's at 512x512 / 224x224.
# Measured speed: docs/results/benchmarks.md.
PRESETS: Dict[str, Tuple[Tuple[int, str, float], ...]] = {
    'deit-t': ((3, 'h', 0.5), (4, 'v', 0.5), (5, 'h', 0.5), (6, 'v', 0.5)),
    'deit-s': ((3, 'h', 0.5), (4, 'v', 0.5), (5, 'h', 0.5), (6, 'v', 0.5),
               (7, 'h', 0.5), (8, 'v', 0.5)),
    'deit-b': ((3, 'h', 0.5), (4, 'v', 0.5), (5, 'h', 0.5), (6, 'v', 0.5),
               (7, 'h', 0.5), (8, 'v', 0.5)),
    # Few-merge presets: the same block FLOPs from two reduction points, one
    # HTM and one VTM right after the exact blocks 0-2. Every reduction
    # point costs launches (about 20 kernels in eager PyTorch) that only
    # FLOPs saved can repay, and a GPU is often bound by launches
    # (docs/results/benchmarks.md, "GPU: NVIDIA H200"); merging more of
    # each line at once also shrinks more of the blocks. Block FLOPs:
    # deit-t-few 0.52 / 0.58, deit-s-few 0.49 / 0.53, deit-b-few 0.51 /
    # 0.53 at 512x512 / 224x224 (a 14-token line has 7 candidate pairs, so
    # 3/4 or 7/8 of them round to 5 or 6 pairs, less than the ratio).
    'deit-t-few': ((3, 'h', 0.75), (4, 'v', 0.75)),
    'deit-s-few': ((3, 'h', 0.875), (4, 'v', 0.875)),
    'deit-b-few': ((3, 'h', 0.875), (4, 'v', 0.875)),
}


def _entry(raw, position: int) -> Tuple[int, str, float]:
    if isinstance(raw, dict):
        unknown = set(raw) - {'block', 'direction', 'ratio'}
        if unknown or len(raw) != 3:
            raise ValueError(
                f'ATME schedule entry {position} {raw!r}: a dict needs '
                f'exactly the keys block, direction, ratio')
        raw = (raw['block'], raw['direction'], raw['ratio'])
    if not isinstance(raw, (tuple, list)) or len(raw) != 3:
        raise ValueError(f'ATME schedule entry {position} {raw!r}: expected '
                         '(block, direction, ratio)')
    return tuple(raw)


def parse_schedule(schedule: Union[str, Sequence],
                   num_layers: int) -> Dict[int, Tuple[str, float]]:
    """Validate a schedule and return ``{block: (direction, ratio)}``.

    Raises:
        ValueError: naming the offending entry, for an unknown preset or
            direction, a block index out of range or given twice, or a ratio
            outside ``(0, 1]`` (a line has no more pairs to merge than its
            candidate pairs).
    """
    if isinstance(schedule, str):
        if schedule not in PRESETS:
            raise ValueError(f'Unknown ATME schedule preset "{schedule}"; '
                             f'presets: {sorted(PRESETS)}')
        schedule = PRESETS[schedule]
    parsed: Dict[int, Tuple[str, float]] = {}
    for position, raw in enumerate(schedule):
        block, direction, ratio = _entry(raw, position)
        where = f'ATME schedule entry {position} {tuple(raw)!r}'
        if not isinstance(block, int) or not 0 <= block < num_layers:
            raise ValueError(f'{where}: block must be an index in '
                             f'[0, {num_layers - 1}]')
        if block in parsed:
            raise ValueError(f'{where}: block {block} is scheduled twice')
        if direction not in DIRECTIONS:
            raise ValueError(f'{where}: direction must be one of '
                             f'{DIRECTIONS}, got {direction!r}')
        if not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ValueError(
                f'{where}: ratio {ratio!r} must be in (0, 1]: it is the '
                'fraction of candidate pairs merged, and a line cannot merge '
                'more pairs than it has')
        parsed[block] = (direction, float(ratio))
    return parsed


def num_merges(ratio: float, length: int) -> int:
    """Pairs merged in a line of ``length`` tokens: ``ratio`` of the
    ``length // 2`` candidate pairs, rounded half up."""
    return int(ratio * (length // 2) + 0.5)


def grid_shapes(schedule: Union[str, Sequence], grid: Tuple[int, int],
                num_layers: int) -> List[Tuple[int, int]]:
    """The grid entering each block, and after the last, for an input grid
    ``(H0, W0)``: ``num_layers + 1`` shapes."""
    steps = parse_schedule(schedule, num_layers)
    H, W = grid
    shapes = [(H, W)]
    for block in range(num_layers):
        if block in steps:
            direction, ratio = steps[block]
            if direction == 'h':
                W -= num_merges(ratio, W)
            else:
                H -= num_merges(ratio, H)
        shapes.append((H, W))
    return shapes


def schedule_flops(schedule: Union[str, Sequence], grid: Tuple[int, int],
                   embed_dims: int, num_layers: int,
                   mlp_ratio: float = 4.) -> float:
    """Analytic multiply-adds of the transformer blocks, as a fraction of
    the unmerged model's (class token included; merge overhead excluded).

    A block on ``N`` tokens costs ``N * C^2 * (4 + 2 * mlp_ratio)`` in its
    linear layers and ``2 * N^2 * C`` in attention; a merge after the
    attention of a block shrinks that block's MLP already.
    """
    shapes = grid_shapes(schedule, grid, num_layers)
    return block_flops_fraction([h * w for h, w in shapes[1:]], grid,
                                embed_dims, mlp_ratio)


def schedule_for_flops(
        target: float,
        grid: Tuple[int, int],
        embed_dims: int,
        num_layers: int = 12,
        mlp_ratio: float = 4.,
        max_points: Optional[int] = None) -> List[Tuple[int, str, float]]:
    """Pick a schedule whose block FLOPs are at most ``target`` (a fraction
    of the dense model's) and as close to it as possible.

    Candidates alternate HTM and VTM with one ratio over consecutive blocks
    from a start block; among those within 1% of the best fraction, the one
    that starts latest and merges most gently wins (later, gentler merges
    keep more detail). ``max_points`` caps the number of merging blocks
    (reduction points; e.g. 2 for GPUs, where each costs launches).
    """
    if not 0 < target < 1:
        raise ValueError(f'target FLOPs fraction {target} must be in (0, 1)')
    if max_points is not None and not (isinstance(max_points, int)
                                       and max_points >= 1):
        raise ValueError(f'max_points {max_points!r} must be an int >= 1')
    # with few points the ratio is the only fine knob left, so it takes
    # eighths; with many, the number of points is
    ratios = (0.25, 0.5, 0.75, 1.0) if max_points is None else tuple(
        k / 8 for k in range(1, 9))
    most = num_layers - 1 if max_points is None else max_points
    candidates = []
    for start, steps, ratio in product(
            range(num_layers - 1), range(1, most + 1), ratios):
        if start + steps > num_layers:
            continue
        schedule = [(start + i, 'hv' [i % 2], ratio) for i in range(steps)]
        fraction = schedule_flops(schedule, grid, embed_dims, num_layers,
                                  mlp_ratio)
        if fraction <= target:
            candidates.append((fraction, start, ratio, schedule))
    if not candidates:
        raise ValueError(f'No schedule reaches {target:.0%} of the FLOPs on '
                         f'a {grid[0]}x{grid[1]} grid')
    best = max(c[0] for c in candidates)
    close = [c for c in candidates if c[0] >= best - 0.01]
    return max(close, key=lambda c: (c[1], -c[2]))[3]
