from .cait_vit import CAITViT
from .compressed_checkpoint import (CompressedCheckpoint, CompressionMeta,
                                    compression_meta,
                                    configure_compressed_backbone,
                                    export_compressed, save_compressed)

__all__ = [
    'CAITViT', 'CompressedCheckpoint', 'CompressionMeta', 'compression_meta',
    'configure_compressed_backbone', 'export_compressed', 'save_compressed'
]
