"""mmdet's RPNHead with a CDCP channel group on its conv."""
from typing import Dict, Optional, Tuple

import torch.nn.functional as F
from mmdet.models.dense_heads import RPNHead
from torch import Tensor

from cait_mm.registry import MODELS
from ..channel_prunable import ChannelPrunable, Widths


@MODELS.register_module()
class CAITRPNHead(ChannelPrunable, RPNHead):
    """``RPNHead`` (one conv) whose conv channels can be pruned (CDCP) and
    built at a pruned width.

    Group ``rpn``: the output channels of ``rpn_conv``, which runs on every
    pyramid level with the same weights (so one mask serves all levels);
    the compactor sits between the conv and its ReLU, and ``rpn_cls`` and
    ``rpn_reg`` lose the matching input columns at export. As it is, the
    same parameters and outputs as mmdet's.

    Args:
        channel_prune (dict, optional): ``dict(groups=('rpn', ))``.
        channel_widths (dict, optional): ``dict(rpn=...)``: the conv's
            output channels (an int) or the fraction of ``feat_channels``
            pruned (a float).
        **kwargs: ``RPNHead``'s arguments.
    """
    FAMILIES = ('rpn', )

    def __init__(self,
                 *args,
                 channel_prune: Optional[Dict] = None,
                 channel_widths: Optional[Dict[str, Widths]] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if self.num_convs != 1:
            raise ValueError('CAITRPNHead prunes a one-conv RPN head, got '
                             f'num_convs={self.num_convs}')
        self._init_pruning(channel_prune, channel_widths, self.feat_channels)

    def _placement(self):
        yield 'rpn', 0, 0, self.rpn_conv

    def _sources(self, family, index, member):
        return [self.in_channels]

    def _tails(self):
        yield 'rpn_cls', self.rpn_cls, [('rpn', 0)]
        yield 'rpn_reg', self.rpn_reg, [('rpn', 0)]

    def _set_layer(self, family, index, member, layer):
        self.rpn_conv = layer

    def forward_single(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        x = F.relu(self._compactor('rpn', 0, 0, self.rpn_conv(x)))
        return self.rpn_cls(x), self.rpn_reg(x)
