"""Runtime pieces on top of MMEngine (imported lazily by the registries)."""
from .cpu_distributed import CPUDistributedDataParallel, setup_cpu_distributed

__all__ = ['CPUDistributedDataParallel', 'setup_cpu_distributed']
