"""A control for ATMEAdaptive: tools/test.py with its candidates widened
from the two neighbours of each token to every token with an earlier
anchor (docs/guides/atme.md, "What neighbour-only merging costs").

The counts, the order of the merges (each token's best candidate, the
``r`` best of the image), the chains and the restoration stay ATMEAdaptive's;
only the neighbour constraint goes, so the mIoU difference to the plain
reducer is what that constraint costs. Not a reducer to use: its groups are
not connected, and it builds an ``N x N`` similarity per step.

    python experiments/real_data/any_pair_control.py CONFIG CHECKPOINT \\
        [tools/test.py options] --cfg-options \\
        model.backbone.token_reducer.type=ATMEAdaptive \\
        model.backbone.token_reducer.ratio=0.0888
"""
import os.path as osp
import runpy
import sys
from typing import Tuple

import torch
from torch import Tensor

import cait_mm.core.atme_adaptive as atme_adaptive
from cait_mm.core.token_state import TokenState

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def any_earlier_token(metric: Tensor,
                      state: TokenState) -> Tuple[Tensor, Tensor]:
    """Each token's most similar token with an earlier anchor (cosine of
    the unit keys), ``(B, N)`` score and target, in place of
    :func:`~cait_mm.core.atme_adaptive.best_candidates`."""
    B, N, _ = metric.shape
    itself = torch.arange(N, device=metric.device).expand(B, N)
    anchor = itself if state.source is None else atme_adaptive.anchors(
        state.source, N)
    sim = (metric @ metric.transpose(1, 2)).masked_fill(
        anchor[:, None, :] >= anchor[:, :, None], float('-inf'))
    score, target = sim.max(-1)
    return score, torch.where(score == float('-inf'), itself, target)


if __name__ == '__main__':
    atme_adaptive.best_candidates = any_earlier_token
    sys.argv = [osp.join(REPO, 'tools', 'test.py')] + sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name='__main__')
