"""mmdet's FCNMaskHead with CDCP channel groups on its convs."""
from typing import Dict, Optional

from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from torch import Tensor, nn

from cait_mm.registry import MODELS
from ..channel_prunable import ChannelPrunable, Widths


@MODELS.register_module()
class CAITFCNMaskHead(ChannelPrunable, FCNMaskHead):
    """``FCNMaskHead`` whose convs can be pruned (CDCP) and built at pruned
    widths.

    Group family ``mask``: one group per conv (its output channels); the
    compactor sits between the conv (and its norm, if any) and its ReLU;
    the next conv, or after the last one the deconv upsampling (or the
    logits conv without one), loses the matching input columns at export.
    The RoI features (the neck's channels) are not pruned. As it is, the
    same parameters and outputs as mmdet's.

    Args:
        channel_prune (dict, optional): ``dict(groups=('mask', ))``.
        channel_widths (dict, optional): ``dict(mask=...)``: an int for
            every conv, a list with one per conv, or the fraction of
            ``conv_out_channels`` pruned (a float).
        **kwargs: ``FCNMaskHead``'s arguments.
    """
    FAMILIES = ('mask', )

    def __init__(self,
                 *args,
                 channel_prune: Optional[Dict] = None,
                 channel_widths: Optional[Dict[str, Widths]] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if self.num_convs < 1 or not (
                self.upsample is None
                or isinstance(self.upsample, nn.ConvTranspose2d)):
            raise ValueError('CAITFCNMaskHead prunes convs followed by a '
                             'deconv upsampling or none, got num_convs='
                             f'{self.num_convs}, upsample '
                             f'{self.upsample_method!r}')
        self._init_pruning(channel_prune, channel_widths,
                           self.conv_out_channels)

    def _placement(self):
        for i, conv in enumerate(self.convs):
            yield 'mask', i, 0, conv

    def _sources(self, family, index, member):
        return [('mask', index - 1)] if index else [self.in_channels]

    def _tails(self):
        last = [('mask', len(self.convs) - 1)]
        if self.upsample is not None:
            yield 'upsample', self.upsample, last
        else:
            yield 'conv_logits', self.conv_logits, last

    def _set_layer(self, family, index, member, layer):
        self.convs[index] = layer

    def forward(self, x: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = self._conv('mask', i, 0, conv, x)
        if self.upsample is not None:
            x = self.relu(self.upsample(x))
        return self.conv_logits(x)
