import copy
import functools
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@functools.lru_cache(maxsize=None)
def _parsed_config(path):
    from mmengine.config import Config
    return Config.fromfile(path)


def load_config(path):
    """``Config.fromfile(path)``, parsed once per session (about 0.7 s a
    config here, and the config tests filter every config at collection);
    a copy, so that a test may change it."""
    return copy.deepcopy(_parsed_config(osp.abspath(path)))


def run_tool(args, cwd=REPO, env=None, check=True, timeout=900):
    """Run ``python <args>`` in the repo, return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, *args],
                          cwd=cwd,
                          env=full_env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n'
                             f'{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}')
    return proc


def without_scope(value):
    """A config value without the ``_scope_`` keys MMEngine adds to the
    parts inherited from ``mmseg::`` / ``mmdet::`` bases."""
    if isinstance(value, dict):
        return {
            k: without_scope(v)
            for k, v in value.items() if k != '_scope_'
        }
    if isinstance(value, (list, tuple)):
        return [without_scope(v) for v in value]
    return value


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """A tiny demo dataset: 8 training and 4 validation 64x64 scenes."""
    from cait_mm.datasets.demo_shapes_generator import generate_demo_dataset
    root = str(tmp_path_factory.mktemp('demo_shapes'))
    generate_demo_dataset(root, seed=3, num_train=8, num_val=4, size=(64, 64))
    return root
