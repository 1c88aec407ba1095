"""Training hooks (registered in cait_mm's HOOKS registry)."""
from .cdcp_hook import CDCPHook

__all__ = ['CDCPHook']
