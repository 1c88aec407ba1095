"""Compression core: plain PyTorch (and timm layers), no OpenMMLab import."""
from .atme import ATME
from .token_reducer import TokenReducer, build_token_reducer
from .token_state import TokenState
from .tps import TPS, KeepScorePredictor, squeeze_tokens
from .vit_layers import Attention, AttentionInfo, Block

__all__ = [
    'ATME', 'Attention', 'AttentionInfo', 'Block', 'KeepScorePredictor',
    'TPS', 'TokenReducer', 'TokenState', 'build_token_reducer',
    'squeeze_tokens'
]
