"""mmdet's Mask R-CNN heads with CDCP channel groups; they subclass mmdet's,
so :data:`cait_mm.registry.MODELS` imports this package only on the first
look-up of their names."""
from .bbox_head import CAITShared2FCBBoxHead
from .mask_head import CAITFCNMaskHead
from .rpn_head import CAITRPNHead

__all__ = ['CAITFCNMaskHead', 'CAITRPNHead', 'CAITShared2FCBBoxHead']
