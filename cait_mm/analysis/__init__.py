"""Model analysis on top of MMEngine's: FLOPs that count what runs."""
from .complexity import count_flops, count_params, flop_analyzer

__all__ = ['count_flops', 'count_params', 'flop_analyzer']
