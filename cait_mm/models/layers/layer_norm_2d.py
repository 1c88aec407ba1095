"""LayerNorm over the channels of ``(B, C, H, W)`` maps."""
import torch.nn.functional as F
from torch import Tensor, nn

from cait_mm.registry import MODELS


@MODELS.register_module(name='LN2d')
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of channels-first maps.

    mmcv's ``'LN'`` is ``nn.LayerNorm``, which normalises the last dimension
    (the width of an NCHW map). This one normalises each position's ``C``
    channels, as ViTDet's simple feature pyramid does. It is position-wise,
    so padding never leaks into content (GroupNorm's statistics would mix
    them). Use it as ``norm_cfg=dict(type='cait_mm.LN2d', eps=1e-6)``; being
    an ``nn.LayerNorm``, optimizer ``norm_decay_mult`` settings apply to it.

    Shapes:
        input: ``(B, C, H, W)``; output: ``(B, C, H, W)`` with channels-last
        strides (no copy back; convs take it as it is, but ops that read raw
        NCHW memory, such as mmcv's RoIAlign, need ``.contiguous()``).
    """

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)
