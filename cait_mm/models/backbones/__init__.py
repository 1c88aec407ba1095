from .cait_vit import CAITViT
from .compressed_checkpoint import (configure_compressed_backbone,
                                    export_compressed, read_compression_meta,
                                    save_compressed)

__all__ = [
    'CAITViT', 'configure_compressed_backbone', 'export_compressed',
    'read_compression_meta', 'save_compressed'
]
