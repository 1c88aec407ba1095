"""Training and test hooks (registered in cait_mm's HOOKS registry)."""
from .cdcp_hook import CDCPHook
from .non_finite_loss_hook import NonFiniteLossHook
from .safe_checkpoint_hook import SafeCheckpointHook
from .test_speed_hook import TestSpeedHook

__all__ = [
    'CDCPHook', 'NonFiniteLossHook', 'SafeCheckpointHook', 'TestSpeedHook'
]
