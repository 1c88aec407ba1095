"""Mask R-CNN's heads with CDCP channel groups: mmdet's heads as they are,
compacted like the masked heads, rebuilt from their widths; the whole
Mask R-CNN exported and rebuilt from the file."""
import os.path as osp

import pytest
import torch
from mmdet.models.dense_heads import RPNHead
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.utils import register_all_modules

from cait_mm.analysis.model_from_config import build_model
from cait_mm.core import ChannelGroup
from cait_mm.models.backbones import export_compressed
from cait_mm.models.det_heads import (CAITFCNMaskHead, CAITRPNHead,
                                      CAITShared2FCBBoxHead)

register_all_modules(init_default_scope=False)


@pytest.fixture(autouse=True)
def mmdet_scope():
    """mmdet's heads build their coders and losses in the default scope,
    which other tests may have left at mmseg's or mmpretrain's."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
CODER = dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
             target_stds=[.1, .1, .2, .2])
HEADS = [
    (CAITRPNHead, RPNHead,
     dict(in_channels=16, feat_channels=12, bbox_coder=CODER,
          anchor_generator=dict(type='AnchorGenerator', scales=[8],
                                ratios=[0.5, 1.0, 2.0], strides=[4, 8])),
     (2, 16, 8, 8), dict(rpn=[6])),
    (CAITShared2FCBBoxHead, Shared2FCBBoxHead,
     dict(in_channels=16, fc_out_channels=20, roi_feat_size=7,
          num_classes=3, bbox_coder=CODER),
     (5, 16, 7, 7), dict(fc=[10, 10])),
    (CAITFCNMaskHead, FCNMaskHead,
     dict(num_convs=3, in_channels=16, conv_out_channels=12, num_classes=3),
     (5, 16, 14, 14), dict(mask=[6, 6, 6])),
]


def _outputs(head, x):
    out = head.forward_single(x) if isinstance(head, RPNHead) else head(x)
    return out if isinstance(out, tuple) else (out, )


def _select_half(module, seed=3):
    """Perturbed compactors (as after training), half of every group
    selected."""
    torch.manual_seed(seed)
    for group in module.modules():
        if isinstance(group, ChannelGroup):
            group.weight.data.add_(0.2 * torch.randn_like(group.weight))
            group.select(0.5)


@pytest.mark.parametrize('ours,theirs,kwargs,shape,half', HEADS)
def test_head_is_mmdets_compacts_like_masked_and_rebuilds(
        ours, theirs, kwargs, shape, half):
    torch.manual_seed(0)
    x = torch.randn(shape)
    torch.manual_seed(0)
    head = ours(**kwargs).eval()
    reference = theirs(**kwargs).eval()
    reference.load_state_dict(head.state_dict())
    with torch.no_grad():
        for a, b in zip(_outputs(head, x), _outputs(reference, x)):
            assert torch.equal(a, b)
    pruned = ours(channel_prune=dict(), **kwargs)
    _select_half(pruned)
    pruned.eval()
    with torch.no_grad():
        masked = _outputs(pruned, x)
        pruned.compact()
        compact = _outputs(pruned, x)
    assert pruned.channel_widths == half
    for a, b in zip(compact, masked):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-4
    rebuilt = ours(channel_widths=half, **kwargs).eval()
    rebuilt.load_state_dict(pruned.state_dict())
    with torch.no_grad():
        for a, b in zip(_outputs(rebuilt, x), compact):
            assert torch.equal(a, b)
    assert ours(channel_widths={k: 0.5 for k in half}, **kwargs
                ).channel_widths == half


def test_unsupported_head_layouts_are_refused():
    kwargs = dict(HEADS[2][2])
    with pytest.raises(ValueError, match='deconv upsampling or none'):
        CAITFCNMaskHead(**dict(kwargs, upsample_cfg=dict(
            type='bilinear', scale_factor=2)))
    with pytest.raises(ValueError, match='one-conv RPN head'):
        CAITRPNHead(**dict(HEADS[0][2], num_convs=2))


MASK_RCNN = osp.join(REPO, 'tests/data/configs/mask_rcnn_demo_tiny.py')
WHOLE = {
    'model.backbone.channel_prune.groups': ('qk', 'v', 'mlp'),
    'model.neck.channel_prune.groups': ('neck', ),
    'model.rpn_head.channel_prune.groups': ('rpn', ),
    'model.roi_head.bbox_head.channel_prune.groups': ('fc', ),
    'model.roi_head.mask_head.channel_prune.groups': ('mask', ),
}


def _head_outputs(model, image, rois):
    """The RPN's maps and the RoI heads' outputs on fixed RoIs (proposals
    would depend on score ties)."""
    feats = model.extract_feat(image)
    rpn = model.rpn_head(feats)
    box = model.roi_head._bbox_forward(feats, rois)
    mask = model.roi_head._mask_forward(feats, rois)
    return [t for level in rpn for t in level] + [
        box['cls_score'], box['bbox_pred'], mask['mask_preds']]


def test_mask_rcnn_export_equals_the_masked_model(tmp_path):
    model = build_model(MASK_RCNN, WHOLE)
    _select_half(model)
    model.eval()
    torch.manual_seed(0)
    image = torch.randn(1, 3, 64, 64)
    rois = torch.tensor([[0., 4., 4., 40., 36.], [0., 10., 2., 60., 60.]])
    with torch.no_grad():
        masked = _head_outputs(model, image, rois)
    out = str(tmp_path / 'compressed.pth')
    info = export_compressed(model, out)
    assert info['heads'] == {
        'neck': dict(channel_widths=dict(neck=[16] * 4)),
        'rpn_head': dict(channel_widths=dict(rpn=[16])),
        'roi_head.bbox_head': dict(channel_widths=dict(fc=[32, 32])),
        'roi_head.mask_head': dict(channel_widths=dict(mask=[16])),
    }
    slim = build_model(MASK_RCNN, WHOLE, checkpoint=out)
    assert slim.roi_head.bbox_head.fc_cls.in_features == 32
    with torch.no_grad():
        exported = _head_outputs(slim, image, rois)
    for a, b in zip(exported, masked):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-4


def test_cdcp_hook_finds_and_ramps_the_detection_heads_groups():
    from types import SimpleNamespace

    from mmengine.logging import MessageHub

    from cait_mm.engine import CDCPHook
    model = build_model(MASK_RCNN, WHOLE).train()
    runner = SimpleNamespace(model=model, iter=0,
                             message_hub=MessageHub.get_instance('det-cdcp'))
    hook = CDCPHook(ratios=dict(qk=0.5, v=0.5, mlp=0.5, neck=0.5, rpn=0.5,
                                fc=0.25, mask=0.5), interval=1, begin=0, end=2)
    hook.before_train(runner)
    assert {k: len(v) for k, v in hook.groups.items()} == dict(
        qk=4, v=4, mlp=4, neck=4, rpn=1, fc=2, mask=1)
    for _ in range(3):
        hook.before_train_iter(runner, 0)
        hook.after_train_iter(runner, 0)
        runner.iter += 1
    assert model.roi_head.bbox_head.compactors['fc'][1].pruned.sum() == 16
    assert runner.message_hub.get_scalar(
        'train/cdcp/rpn_sparsity').current() == 0.5
    with pytest.raises(ValueError, match=r"no ratio for \['fc', 'mask'\]"):
        CDCPHook(ratios=dict(qk=0.5, v=0.5, mlp=0.5, neck=0.5,
                             rpn=0.5)).before_train(runner)
