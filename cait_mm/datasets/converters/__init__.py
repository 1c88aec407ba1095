"""Converters of public datasets to mmseg's folder layout; the command-line
tools are ``tools/dataset_converters/*.py``."""
from .common import ConversionSummary, sliding_windows
from .dubai_aerial import convert_dubai_aerial
from .isbi_membrane import convert_isbi_membrane

__all__ = [
    'ConversionSummary', 'convert_dubai_aerial', 'convert_isbi_membrane',
    'sliding_windows'
]
