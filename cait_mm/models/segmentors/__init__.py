"""Segmentors; they subclass mmseg's, so :data:`cait_mm.registry.MODELS`
imports this package only on the first look-up of their names."""
from .token_reducer_encoder_decoder import TokenReducerEncoderDecoder

__all__ = ['TokenReducerEncoderDecoder']
