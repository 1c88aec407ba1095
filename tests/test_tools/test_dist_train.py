"""tools/dist_train.sh with two CPU processes (gloo)."""
import json
import os.path as osp
import socket
import subprocess
import sys

from ..conftest import REPO

CONFIG = osp.join(REPO, 'tests/data/configs/demo_tiny_rank_probe.py')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_ranks_train_in_step(tmp_path, demo_data):
    env = dict(
        PORT=str(_free_port()),
        PYTHONPATH=osp.join(REPO, 'tests/test_tools'),
        OMP_NUM_THREADS='1',
        # no python with torch on the PATH: the script finds the project's
        PATH='/usr/bin:/bin')
    if osp.abspath(sys.prefix) != osp.join(REPO, '.venv'):
        env['PYTHON'] = sys.executable  # make's VENV is elsewhere
    options = [
        f'{loader}.dataset.data_root={demo_data}'
        for loader in ('train_dataloader', 'val_dataloader')
    ]
    proc = subprocess.run([
        'bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir',
        str(tmp_path), '--cfg-options', 'train_cfg.max_iters=3', *options
    ], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    ranks = [json.load(open(tmp_path / f'rank{r}.json')) for r in (0, 1)]
    assert [r['rank'] for r in ranks] == [0, 1]
    assert all(r['world_size'] == 2 for r in ranks)
    assert all(r['wrapper'] == 'CPUDistributedDataParallel' for r in ranks)
    # gradients were averaged: both ranks end with identical weights ...
    assert ranks[0]['params'] == ranks[1]['params']
    # ... after training on different shards of the data
    assert len(ranks[0]['images']) == len(ranks[1]['images']) == 3 * 2
    assert set(ranks[0]['images'][:4]).isdisjoint(ranks[1]['images'][:4])
