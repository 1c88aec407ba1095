"""ViTDet's simple feature pyramid: multi-scale maps from one plain-ViT map."""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from cait_mm.core import content_cells, content_mask, scale_cells
from cait_mm.registry import MODELS
from ..channel_prunable import ChannelPrunable, Widths

# The upsampling/downsampling stage for each supported scale factor.
SCALE_FACTORS = (4.0, 2.0, 1.0, 0.5)


@MODELS.register_module()
class SimpleFeaturePyramid(ChannelPrunable, BaseModule):
    """Feature pyramid built from the last map of a plain ViT (ViTDet).

    Following Li et al., "Exploring Plain Vision Transformer Backbones for
    Object Detection" (ViTDet), the pyramid is made from the single
    ``(B, C, H/16, W/16)`` map of a plain ViT (for ``CAITViT`` with token
    merging: the merged tokens restored to the full grid), with no top-down
    or lateral fusion:

    - scale 4 (1/4): ``ConvTranspose 2x2/2 -> norm -> act ->
      ConvTranspose 2x2/2``, ``C -> C/2 -> C/4`` channels;
    - scale 2 (1/8): ``ConvTranspose 2x2/2``, ``C -> C/2``;
    - scale 1 (1/16): the map itself;
    - scale 0.5 (1/32): ``MaxPool 2x2/2`` (odd sizes zero-padded first);

    then each level goes through a ``1x1`` and a ``3x3`` conv with a norm
    (no activation) to ``out_channels``. Outputs beyond the scale factors
    (``num_outs``) subsample the last one with ``max_pool2d(kernel 1, stride
    2)``, as mmdet's ``FPN`` does without extra convs; with the defaults this
    is the 1/64 level that Mask R-CNN's RPN expects (anchor strides 4-64).

    Padded batches: with ``valid_sizes`` (each image's content size in
    pixels, mmdet's ``img_shape``), every map is zeroed outside the image's
    content before each spatially mixing op (the ``3x3`` convs, the max
    pool) and at the outputs. Padding then reads exactly like a conv's own
    zero padding, so an image's outputs on its content are the same in any
    padded batch as alone, up to float rounding, provided that the input map
    is zero outside the content too (``CAITViT`` zeroes it when given
    ``valid_sizes``). The max pool zero-pads an odd-sized map to an even
    one, so the last window reads what padding would hold in a batch.
    Outside the content the outputs are 0. The content of a level is the
    input's content grid ``ceil(h / input_stride)`` times its scale, rounded
    up: it includes the part of
    the last patch that covers padding pixels, which belongs to the image
    alone as well. The norms are position-wise (LayerNorm), which keeps this
    true; a GroupNorm would mix padding into its statistics.

    Args:
        in_channels (int): Channels ``C`` of the input map.
        out_channels (int): Channels of every output level.
        scale_factors (Sequence[float]): Output scales relative to the
            input map, from ``(4.0, 2.0, 1.0, 0.5)``, in decreasing order.
        num_outs (int): Number of outputs; ``num_outs - len(scale_factors)``
            extra levels are made by subsampling the last one.
        in_index (int): Which backbone output to use (ViTDet uses the last
            block's).
        input_stride (int): Stride in pixels of the input map (the ViT's
            patch size); turns ``valid_sizes`` into content grids.
        norm_cfg (dict): Norm after the upsampling and in the level convs.
        act_cfg (dict): Activation inside the 4x upsampling.
        channel_prune (dict, optional): ``dict(groups=('neck', ))``: CDCP
            compactors on each level's inner channels (the ``1x1`` conv's
            outputs, the ``3x3`` conv's inputs; one group per level), pruned
            by ``cait_mm.CDCPHook``. They sit before the ``1x1`` conv's
            layer norm, whose statistics leave the pruned channels out, so
            the masked neck computes what its export computes. The outputs
            (shared by every level of the RPN and RoI heads) are not
            pruned.
        channel_widths (dict, optional): ``dict(neck=...)``: the inner
            channels of every level (an int), per level (a list) or the
            fraction of ``out_channels`` pruned (a float).
        init_cfg (dict | list, optional): MMEngine initialisation config;
            by default the convs are initialised by ``ConvModule`` (Kaiming)
            and the transposed convs by PyTorch.
    """
    #: CDCP groups (:class:`ChannelPrunable`): each level's inner channels
    FAMILIES = ('neck', )

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = SCALE_FACTORS,
                 num_outs: int = 5,
                 in_index: int = -1,
                 input_stride: int = 16,
                 norm_cfg: Dict = dict(type='cait_mm.LN2d', eps=1e-6),
                 act_cfg: Dict = dict(type='GELU'),
                 channel_prune: Optional[Dict] = None,
                 channel_widths: Optional[Dict[str, Widths]] = None,
                 init_cfg: Optional[Union[Dict, List]] = None):
        super().__init__(init_cfg=init_cfg)
        scale_factors = tuple(float(s) for s in scale_factors)
        ordered = list(scale_factors) == sorted(
            set(scale_factors), reverse=True)
        if not scale_factors or not ordered or not set(scale_factors) <= set(
                SCALE_FACTORS):
            raise ValueError(f'scale_factors must be distinct values from '
                             f'{SCALE_FACTORS} in decreasing order, got '
                             f'{scale_factors}')
        if num_outs < len(scale_factors):
            raise ValueError(f'num_outs={num_outs} is fewer than the '
                             f'{len(scale_factors)} scale factors')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_factors = scale_factors
        self.num_outs = num_outs
        self.in_index = in_index
        self.input_stride = input_stride

        self.stages = nn.ModuleList()
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        self.stage_channels = []
        for scale in scale_factors:
            stage, channels = self._make_stage(scale, in_channels, norm_cfg,
                                               act_cfg)
            self.stages.append(stage)
            self.stage_channels.append(channels)
            self.lateral_convs.append(
                ConvModule(
                    channels, out_channels, 1, norm_cfg=norm_cfg,
                    act_cfg=None))
            self.fpn_convs.append(
                ConvModule(
                    out_channels,
                    out_channels,
                    3,
                    padding=1,
                    norm_cfg=norm_cfg,
                    act_cfg=None))
        self._init_pruning(channel_prune, channel_widths, out_channels)

    def _placement(self):
        for i, conv in enumerate(self.lateral_convs):
            yield 'neck', i, 0, conv

    def _sources(self, family, index, member):
        return [self.stage_channels[index]]

    def _tails(self):
        for i, conv in enumerate(self.fpn_convs):
            yield f'fpn_convs.{i}', conv, [('neck', i)]

    def _set_layer(self, family, index, member, layer):
        self.lateral_convs[index] = layer

    @staticmethod
    def _make_stage(scale: float, channels: int, norm_cfg: Dict,
                    act_cfg: Dict) -> Tuple[nn.Module, int]:
        """The resampling stage of one level and its output channels."""
        if scale == 4.0:
            return nn.Sequential(
                nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
                build_norm_layer(norm_cfg, channels // 2)[1],
                build_activation_layer(act_cfg),
                nn.ConvTranspose2d(channels // 2, channels // 4, 2,
                                   stride=2)), channels // 4
        if scale == 2.0:
            return nn.ConvTranspose2d(
                channels, channels // 2, 2, stride=2), channels // 2
        if scale == 1.0:
            return nn.Identity(), channels
        return HalfMaxPool(), channels

    def content_masks(self, valid_sizes: Optional[Sequence[Tuple[int, int]]],
                      grid: Tuple[int, int], scales: Sequence[float],
                      ref: Tensor) -> List[Optional[Tensor]]:
        """Per scale, the ``(B, 1, h, w)`` content mask of an image batch.

        Args:
            valid_sizes: Per image, the content ``(h, w)`` in pixels.
            grid: ``(H, W)`` of the input map.
            scales: Scales relative to the input map.
            ref: A tensor giving the masks' dtype and device.

        Returns:
            list: a mask (1 on content, 0 on padding) per scale, or ``None``
            where no image of the batch has padding at that scale.
        """
        cells = content_cells(valid_sizes, self.input_stride, tuple(grid),
                              what='input map')
        if cells is None:
            return [None] * len(scales)
        masks = []
        for scale in scales:
            # scales are powers of two: exact in floating point
            size = scale_cells(cells, scale)
            H, W = (math.ceil(n * scale) for n in grid)
            if all(h >= H and w >= W for h, w in size):
                masks.append(None)
                continue
            mask = content_mask(size, (H, W), ref.device)
            masks.append(mask.unsqueeze(1).to(ref.dtype))
        return masks

    def forward(
        self,
        inputs: Union[Tensor, Sequence[Tensor]],
        valid_sizes: Optional[Sequence[Tuple[int, int]]] = None
    ) -> Tuple[Tensor, ...]:
        """
        Args:
            inputs (Tensor | Sequence[Tensor]): The backbone's outputs; the
                map ``inputs[in_index]``, ``(B, C, H, W)``, is used.
            valid_sizes (Sequence[tuple], optional): Per image, the
                ``(h, w)`` in pixels of its content in a batch padded at the
                bottom/right (mmdet's ``img_shape``).

        Returns:
            tuple[Tensor]: ``num_outs`` contiguous maps ``(B, out_channels,
            h_i, w_i)`` with ``h_i = H * s_i`` for the scale factors ``s_i``
            (``ceil`` for scales below 1), then the extra levels, each half
            (``ceil``) the previous one; with the defaults strides 4, 8,
            16, 32, 64 for a stride-16 input, e.g. 200x336, 100x168, 50x84,
            25x42, 13x21
            for a 50x84 input map (an 800x1344 image).
        """
        x = inputs if isinstance(inputs, Tensor) else inputs[self.in_index]
        extra = self.num_outs - len(self.scale_factors)
        scales = self.scale_factors + tuple(self.scale_factors[-1] / 2**(i + 1)
                                            for i in range(extra))
        masks = self.content_masks(valid_sizes, x.shape[-2:], (1.0, ) + scales,
                                   x)
        x = _masked(x, masks[0])
        outs = []
        for i, (stage, lateral, fpn, mask) in enumerate(
                zip(self.stages, self.lateral_convs, self.fpn_convs,
                    masks[1:])):
            # Stages and lateral convs are position-wise: padding only has
            # to be zero where the next op mixes positions (the 3x3 conv).
            y = _masked(self._conv('neck', i, 0, lateral, stage(x)), mask)
            outs.append(_masked(fpn(y), mask))
        for _ in range(extra):
            # a subsample of a zero-padded map stays zero-padded
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        # LN2d leaves channels-last strides, which the convs take as they
        # are; mmcv's RoIAlign reads its input as contiguous NCHW memory.
        return tuple(out.contiguous() for out in outs)


def _masked(x: Tensor, mask: Optional[Tensor]) -> Tensor:
    return x if mask is None else x * mask


class HalfMaxPool(nn.Module):
    """``2x2/2`` max pool to ``(ceil(H / 2), ceil(W / 2))``.

    An odd-sized map is zero-padded at the bottom/right first: the last
    window then reads what the zeroed padding of a batch would give, so an
    image's pooled map does not depend on how far it is padded.
    """

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return F.max_pool2d(x, 2, stride=2)
