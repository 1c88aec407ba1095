"""Compression core: plain PyTorch (and timm layers), no OpenMMLab import."""
from .token_state import TokenState
from .tps import TPS, KeepScorePredictor, squeeze_tokens
from .vit_layers import Attention, AttentionInfo, Block

__all__ = [
    'Attention', 'AttentionInfo', 'Block', 'KeepScorePredictor', 'TPS',
    'TokenState', 'squeeze_tokens'
]
