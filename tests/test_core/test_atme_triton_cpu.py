"""ATME's Triton kernels on a machine without a GPU, and their errors.

Triton's interpreter runs the kernels on CPU tensors only when
``TRITON_INTERPRET=1`` is set before Triton is first imported, which this
process did long ago: tests/test_core/test_atme_triton.py and the Triton
cases of test_atme_reference.py run in a process of their own here, and must
pass there, none skipped. The interpreter checks
the kernels' logic, not that they build for a GPU: Triton's compiler does
that here too, down to the cubin of an H100 (sm_90) and an A100 (sm_80),
for every specialisation the op launches.
"""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from cait_mm.core import atme_triton

if atme_triton.available():
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
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
         osp.join(HERE, 'test_atme_triton.py'),
         osp.join(HERE, 'test_atme_reference.py::TestTriton')],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout else ''
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = re.search(r'(\d+) passed', summary)
    assert passed and int(passed.group(1)) >= 36, summary
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


def _build(kernel, pointers, constants, arch):
    """Compile ``kernel`` for CUDA ``arch`` (no GPU needed): pointer
    arguments typed by ``pointers``, ints 32-bit, ``constants`` fixed."""
    signature = {
        name: 'constexpr' if name in constants else pointers.get(name, 'i32')
        for name in kernel.arg_names
    }
    constexprs = {(kernel.arg_names.index(k), ): v
                  for k, v in constants.items()}
    return triton.compile(ASTSource(kernel, signature, constexprs),
                          target=GPUTarget('cuda', arch, 32))


@pytest.mark.skipif(not atme_triton.available(), reason='needs Triton')
@pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') == '1',
                    reason='the interpreter does not compile')
@pytest.mark.parametrize('arch', [80, 90])
def test_the_kernels_compile_for_the_gpu(arch):
    plan, apply = atme_triton._kernels()
    assert isinstance(plan, triton.runtime.jit.JITFunction)
    # what autocast gives: fp16 keys, fp32 residual tokens and sizes; and
    # a bf16 model
    for keys, tokens in (('fp16', 'fp32'), ('bf16', 'bf16')):
        pointers = dict(k_ptr=f'*{keys}', size_ptr=f'*{tokens}',
                        moved_ptr='*i64', first_ptr='*i32',
                        second_ptr='*i32', weight_ptr='*fp32',
                        new_size_ptr=f'*{tokens}')
        for flags in ((False, False, False), (True, False, True),
                      (False, True, True), (True, True, False)):
            constants = dict(zip(('VERTICAL', 'LINE_MODE', 'HAS_SIZE'),
                                 flags), BLOCK_P=8, BLOCK_M=16, BLOCK_D=64)
            assert _build(plan, pointers, constants, arch).asm['cubin']
        pointers = dict(x_ptr=f'*{tokens}', out_ptr=f'*{tokens}',
                        first_ptr='*i32', second_ptr='*i32',
                        weight_ptr='*fp32')
        assert _build(apply, pointers, dict(BLOCK_R=16, BLOCK_C=128),
                      arch).asm['cubin']
