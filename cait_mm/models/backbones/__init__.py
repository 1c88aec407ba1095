from .cait_vit import CAITViT
from .compressed_checkpoint import (export_compressed, read_compression_meta,
                                    save_compressed)

__all__ = [
    'CAITViT', 'export_compressed', 'read_compression_meta', 'save_compressed'
]
