"""Compression core: plain PyTorch (and timm layers), no OpenMMLab import."""
from .atme import ATME
from .cdcp import block_widths, channel_groups, compact_block, ramp_ratio
from .compactor import ChannelGroup
from .token_reducer import TokenReducer, build_token_reducer
from .token_state import TokenState
from .tps import TPS, KeepScorePredictor, squeeze_tokens
from .vit_layers import Attention, AttentionInfo, Block, Mlp

__all__ = [
    'ATME', 'Attention', 'AttentionInfo', 'Block', 'ChannelGroup',
    'KeepScorePredictor', 'Mlp', 'TPS', 'TokenReducer', 'TokenState',
    'block_widths', 'build_token_reducer', 'channel_groups', 'compact_block',
    'ramp_ratio', 'squeeze_tokens'
]
