"""The command-line tail that ``tools/train.py`` and ``tools/test.py`` share,
as mmseg's tools have it: ``--cfg-options``, ``--launcher`` and
``--local_rank``."""
import argparse
import os

from mmengine.config import DictAction


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--cfg-options``, ``--launcher`` and ``--local_rank``."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, xxx=yyy format; lists as key="[a,b]"')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_runner_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line; ``LOCAL_RANK`` from ``--local_rank`` where
    the launcher did not set it (``torch.distributed.launch`` passes the
    argument, ``torchrun`` the variable)."""
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args
