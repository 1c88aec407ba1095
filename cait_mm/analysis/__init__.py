"""Model analysis on top of MMEngine's: FLOPs that count what runs."""
from .complexity import count_flops, count_params, flop_analyzer
from .token_bound import TokenCountBound

__all__ = ['TokenCountBound', 'count_flops', 'count_params', 'flop_analyzer']
