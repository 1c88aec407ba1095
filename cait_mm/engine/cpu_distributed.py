"""Distributed data parallel on CPU processes (gloo), e.g. 2 ranks on a laptop.

MMEngine's ``pytorch`` launcher path assumes GPUs in two places: it calls
``torch.cuda.set_device`` before creating the process group, and it wraps the
model with ``device_ids=[LOCAL_RANK]``, which DDP rejects for CPU modules.
:func:`setup_cpu_distributed` creates the gloo group itself (MMEngine then
skips its own initialisation) and selects :class:`CPUDistributedDataParallel`.
"""
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from torch import nn

from cait_mm.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for modules that live on the CPU.

    SyncBN has no CPU kernel, so it is reverted to BN (per-rank statistics),
    as MMEngine already does for non-distributed runs.
    """

    def __init__(self, module: nn.Module, device_ids=None, **kwargs):
        # MMEngine always passes device_ids=[LOCAL_RANK]; CPU DDP needs None.
        super().__init__(
            module=revert_sync_batchnorm(module), device_ids=None, **kwargs)


def setup_cpu_distributed(cfg: Config) -> bool:
    """Prepare ``cfg`` for a distributed run on CPU when no GPU is visible.

    Call it before building the Runner. Returns whether it did anything.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return False
    if cfg.launcher != 'pytorch':
        raise ValueError(
            f'launcher={cfg.launcher!r} needs GPUs; on CPU use '
            '--launcher pytorch (torchrun / tools/dist_train.sh)')
    timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout', 1800)
    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            timeout=timedelta(seconds=timeout))
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper['type'] = 'cait_mm.CPUDistributedDataParallel'
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return True


def teardown_distributed() -> None:
    """Destroy the default process group, if any, after a barrier.

    Neither MMEngine nor torchrun does it; a gloo group left to the
    interpreter's exit can abort the process ("terminate called without an
    active exception") after training finished, failing the whole launch.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
