"""Training and test hooks (registered in cait_mm's HOOKS registry)."""
from .cdcp_hook import CDCPHook
from .non_finite_loss_hook import NonFiniteLossHook
from .progress_bar_hook import ProgressBarHook
from .safe_checkpoint_hook import SafeCheckpointHook
from .test_speed_hook import TestSpeedHook

__all__ = [
    'CDCPHook', 'NonFiniteLossHook', 'ProgressBarHook', 'SafeCheckpointHook',
    'TestSpeedHook'
]
