"""Training hooks (registered in cait_mm's HOOKS registry)."""
from .cdcp_hook import CDCPHook
from .safe_checkpoint_hook import SafeCheckpointHook

__all__ = ['CDCPHook', 'SafeCheckpointHook']
