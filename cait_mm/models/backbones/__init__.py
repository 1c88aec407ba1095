from .cait_vit import CAITViT

__all__ = ['CAITViT']
