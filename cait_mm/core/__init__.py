"""Compression core: plain PyTorch (and timm layers), no OpenMMLab import."""
from .atme import ATME
from .atme_adaptive import ATMEAdaptive
from .cdcp import (block_widths, channel_groups, compact_block,
                   parse_channel_prune, ramp_ratio)
from .compactor import ChannelGroup
from .evit import EViT
from .flops_budget import block_flops_fraction
from .padding import content_cells, content_mask, scale_cells
from .spec import CompressionSpec
from .token_bound import TokenCountBound
from .token_reducer import (TOKEN_REDUCERS, FlopsMatch, TokenReducer,
                            build_token_reducer, match_flops,
                            register_token_reducer)
from .token_state import TokenState
from .tome import ToMe
from .tps import TPS, KeepScorePredictor, squeeze_tokens
from .vit_layers import (Attention, AttentionInfo, Block, Mlp, attention_dtype,
                         check_channel_groups)

__all__ = [
    'ATME', 'ATMEAdaptive', 'Attention', 'AttentionInfo', 'Block',
    'ChannelGroup',
    'CompressionSpec', 'EViT', 'FlopsMatch', 'KeepScorePredictor', 'Mlp',
    'TOKEN_REDUCERS', 'TPS', 'ToMe', 'TokenCountBound', 'TokenReducer',
    'TokenState', 'attention_dtype', 'block_flops_fraction',
    'block_widths', 'build_token_reducer', 'channel_groups',
    'check_channel_groups', 'compact_block', 'content_cells',
    'content_mask', 'match_flops', 'parse_channel_prune', 'ramp_ratio',
    'register_token_reducer', 'scale_cells', 'squeeze_tokens'
]
