"""ATME's Triton kernels on a machine without a GPU, and their errors.

Triton's interpreter runs the kernels on CPU tensors only when
``TRITON_INTERPRET=1`` is set before Triton is first imported, which this
process did long ago: tests/test_core/test_atme_triton.py runs in a process
of its own here, and must pass there, none skipped.
"""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from cait_mm.core import atme_triton
from cait_mm.core.atme import ATME
from cait_mm.core.token_state import TokenState

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))


@pytest.mark.skipif(not atme_triton.available(), reason='needs Triton')
@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='with a GPU the kernels are tested natively')
def test_the_kernels_pass_their_tests_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         osp.join(HERE, 'test_atme_triton.py')],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout else ''
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = re.search(r'(\d+) passed', summary)
    assert passed and int(passed.group(1)) >= 20, summary
    assert 'skipped' not in summary, summary


def test_a_wrong_kernel_name_is_refused():
    with pytest.raises(ValueError, match='kernel must be one of'):
        ATME(num_layers=12, schedule='deit-s', kernel='cuda')


@pytest.mark.skipif(not atme_triton.available(), reason='needs Triton')
@pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') == '1',
                    reason='the interpreter runs CPU tensors')
def test_cpu_tensors_get_a_clear_error_outside_the_interpreter():
    x = torch.randn(1, 1 + 16, 8)
    keys = torch.randn(1, 2, 1 + 16, 4)
    with pytest.raises(RuntimeError, match='runs on CUDA tensors'):
        atme_triton.merge_grid_triton(x, keys, TokenState.from_grid((4, 4)),
                                      1, False, 1, False)
