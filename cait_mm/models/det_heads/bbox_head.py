"""mmdet's Shared2FCBBoxHead with CDCP channel groups on its shared FCs."""
from typing import Dict, Optional, Tuple

from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from torch import Tensor

from cait_mm.registry import MODELS
from ..channel_prunable import ChannelPrunable, Widths


@MODELS.register_module()
class CAITShared2FCBBoxHead(ChannelPrunable, Shared2FCBBoxHead):
    """``Shared2FCBBoxHead`` whose two shared FCs can be pruned (CDCP) and
    built at pruned widths.

    Group family ``fc``: one group per shared FC (its output units); the
    compactor sits between the FC and its ReLU, the next FC and the
    classifier and regressor lose the matching input columns at export.
    The RoI features (the neck's channels) are not pruned. As it is, the
    same parameters and outputs as mmdet's.

    Args:
        channel_prune (dict, optional): ``dict(groups=('fc', ))``.
        channel_widths (dict, optional): ``dict(fc=...)``: an int for both
            FCs, a list with one per FC, or the fraction of
            ``fc_out_channels`` pruned (a float).
        **kwargs: ``Shared2FCBBoxHead``'s arguments.
    """
    FAMILIES = ('fc', )

    def __init__(self,
                 *args,
                 channel_prune: Optional[Dict] = None,
                 channel_widths: Optional[Dict[str, Widths]] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if self.with_avg_pool:
            raise ValueError('CAITShared2FCBBoxHead: with_avg_pool is not '
                             'supported')
        self._init_pruning(channel_prune, channel_widths,
                           self.fc_out_channels)

    def _placement(self):
        for i, fc in enumerate(self.shared_fcs):
            yield 'fc', i, 0, fc

    def _sources(self, family, index, member):
        return [('fc', index - 1)] if index else [
            self.in_channels * self.roi_feat_area]

    def _tails(self):
        last = ('fc', len(self.shared_fcs) - 1)
        if self.with_cls:
            yield 'fc_cls', self.fc_cls, [last]
        if self.with_reg:
            yield 'fc_reg', self.fc_reg, [last]

    def _set_layer(self, family, index, member, layer):
        self.shared_fcs[index] = layer

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        x = x.flatten(1)
        for i, fc in enumerate(self.shared_fcs):
            x = self.relu(self._compactor('fc', i, 0, fc(x)))
        cls_score = self.fc_cls(x) if self.with_cls else None
        bbox_pred = self.fc_reg(x) if self.with_reg else None
        return cls_score, bbox_pred
