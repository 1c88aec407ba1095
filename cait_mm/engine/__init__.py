"""Runtime pieces on top of MMEngine (imported lazily by the registries)."""
from .cpu_distributed import (CPUDistributedDataParallel,
                              setup_cpu_distributed, teardown_distributed)
from .hooks import CDCPHook
from .optimizers import LayerDecayOptimizerConstructor

__all__ = [
    'CDCPHook', 'CPUDistributedDataParallel',
    'LayerDecayOptimizerConstructor', 'setup_cpu_distributed',
    'teardown_distributed'
]
