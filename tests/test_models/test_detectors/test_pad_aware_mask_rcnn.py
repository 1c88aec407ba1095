"""A padded batch gives each image the features, RPN maps and RoI-head
results it gets alone (CAITViT with ATME + SimpleFeaturePyramid)."""
import copy
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from ...conftest import REPO

CONFIG = osp.join(REPO, 'tests/data/configs/mask_rcnn_demo_tiny.py')
MERGE = dict(type='ATME',
             schedule=[(0, 'h', .5), (1, 'v', .5), (2, 'h', .5)])
# Content sizes. Alone, each is padded to a multiple of 32 with at least 16
# pixels to spare at the bottom/right: mmcv's RoIAlign clamps samples that
# fall in the last half stride of a map to its border row, so an image that
# fills its own map exactly would read its border where a batch reads
# padding (mmdet's behaviour with any backbone, not the features').
SIZES = [(72, 44), (40, 70)]


def _samples(sizes, batch_shape):
    from mmdet.structures import DetDataSample
    return [
        DetDataSample(
            metainfo=dict(
                img_shape=size,
                ori_shape=size,
                pad_shape=batch_shape,
                batch_input_shape=batch_shape,
                scale_factor=(1., 1.))) for size in sizes
    ]


def _pad(img, shape):
    out = img.new_zeros(3, *shape)
    out[:, :img.shape[1], :img.shape[2]] = img
    return out


def _own_shape(size):
    return tuple(32 * math.ceil(s / 32) for s in size)


@pytest.fixture(scope='module')
def model():
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.token_reducer = MERGE
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval()


@pytest.fixture(scope='module')
def images():
    torch.manual_seed(1)
    return [torch.randn(3, *size) for size in SIZES]


def test_batch_and_alone_agree(model, images):
    from mmdet.models.detectors import MaskRCNN
    from mmdet.structures.bbox import bbox2roi

    from cait_mm.models.detectors import PadAwareMaskRCNN
    assert isinstance(model, PadAwareMaskRCNN) and isinstance(model, MaskRCNN)
    assert model.backbone.token_reducer is not None
    batch_shape = (96, 96)
    batch = torch.stack([_pad(img, batch_shape) for img in images])
    samples = _samples(SIZES, batch_shape)
    with torch.no_grad():
        feats = model.extract_feat(batch, samples)
        rpn = model.rpn_head(feats)
        for i, img in enumerate(images):
            shape = _own_shape(SIZES[i])
            one = _samples(SIZES[i:i + 1], shape)
            alone = model.extract_feat(_pad(img, shape)[None], one)
            # the whole of the image's own padded map, content and padding
            for level, (b, a) in enumerate(zip(feats, alone)):
                h, w = a.shape[-2:]
                torch.testing.assert_close(
                    b[i:i + 1, :, :h, :w],
                    a,
                    rtol=1e-4,
                    atol=1e-4,
                    msg=f'image {i}, feature level {level}')
                assert b[i, :, h:].abs().sum() == 0
                assert b[i, :, :, w:].abs().sum() == 0
            for outs_b, outs_a in zip(rpn, model.rpn_head(alone)):
                for b, a in zip(outs_b, outs_a):
                    h, w = a.shape[-2:]
                    torch.testing.assert_close(
                        b[i:i + 1, :, :h, :w], a, rtol=1e-4, atol=1e-4)

            # RoI heads on the image's own proposals, per proposal (scores,
            # box deltas, mask logits): post-NMS, score-sorted detections of
            # untrained weights are near ties that float noise may reorder
            proposals = model.rpn_head.predict(alone, one, rescale=False)
            assert len(proposals[0]) > 0
            rois = bbox2roi([proposals[0].bboxes])
            batch_rois = rois.clone()
            batch_rois[:, 0] = i
            heads = model.roi_head
            bbox_a = heads._bbox_forward(alone, rois)
            bbox_b = heads._bbox_forward(feats, batch_rois)
            for key in ('cls_score', 'bbox_pred'):
                torch.testing.assert_close(
                    bbox_b[key], bbox_a[key], rtol=1e-4, atol=1e-4, msg=key)
            torch.testing.assert_close(
                heads._mask_forward(feats, batch_rois)['mask_preds'],
                heads._mask_forward(alone, rois)['mask_preds'],
                rtol=1e-4,
                atol=1e-4)


def test_sizes_reach_the_backbone_through_predict(model, images):
    """``predict`` passes each image's img_shape: padding the same image
    further leaves its features as they were, where a plain MaskRCNN's ViT
    attends to the padding."""
    from mmdet.models.detectors import MaskRCNN
    img, size = images[1], SIZES[1]
    small, large = _own_shape(size), (128, 160)
    captured = []
    hook = model.neck.register_forward_hook(
        lambda module, args, kwargs, out: captured.append(out),
        with_kwargs=True)
    try:
        with torch.no_grad():
            for shape in (small, large):
                result = model.predict(
                    _pad(img, shape)[None], _samples([size], shape))[0]
                assert len(result.pred_instances) > 0
                assert result.pred_instances.masks.shape[-2:] == size
    finally:
        hook.remove()
    for a, b in zip(*captured):
        h, w = a.shape[-2:]
        torch.testing.assert_close(b[..., :h, :w], a, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        plain = [
            MaskRCNN.extract_feat(model,
                                  _pad(img, shape)[None])[2]
            for shape in (small, large)
        ]
    h, w = plain[0].shape[-2:]
    assert not torch.allclose(plain[0], plain[1][..., :h, :w], atol=1e-3)


def _gt(samples):
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    for sample in samples:
        h, w = sample.img_shape
        masks = torch.zeros(1, h, w, dtype=torch.uint8)
        masks[0, 8:30, 10:40] = 1
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[10., 8., 40., 30.]]),
            labels=torch.tensor([2]),
            masks=BitmapMasks(masks.numpy(), h, w))
    return samples


def test_train_step_on_a_padded_batch(model, images):
    batch_shape = (96, 96)
    batch = torch.stack([_pad(img, batch_shape) for img in images])
    samples = _gt(_samples(SIZES, batch_shape))
    model.train()
    try:
        losses = model.loss(batch, samples)
    finally:
        model.eval()
    assert {
        'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'
    } <= set(losses)
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None


def test_unpadded_it_computes_what_mmdet_computes(model, images):
    """``loss``, ``predict`` and ``_forward`` pass the image shapes
    explicitly; without padding they are mmdet's ``MaskRCNN``'s."""
    from mmdet.models.detectors import MaskRCNN
    shape = (64, 64)
    batch = torch.randn(2, 3, *shape)
    samples = _gt(_samples([shape, shape], shape))
    results = []
    for method in (type(model), MaskRCNN):
        model.train()
        torch.manual_seed(5)  # the RoI samplers draw at random
        losses = method.loss(model, batch, copy.deepcopy(samples))
        model.eval()
        with torch.no_grad():
            preds = method.predict(model, batch, copy.deepcopy(samples))
            raw = method._forward(model, batch, copy.deepcopy(samples))
        results.append((losses, preds, raw))
    (ours, ours_pred, ours_raw), (theirs, theirs_pred, theirs_raw) = results
    assert set(ours) == set(theirs)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)
    for a, b in zip(ours_pred, theirs_pred):
        torch.testing.assert_close(a.pred_instances.bboxes,
                                   b.pred_instances.bboxes, rtol=0, atol=0)
    torch.testing.assert_close(ours_raw, theirs_raw, rtol=0, atol=0)


def test_a_backbone_that_cannot_skip_padding_is_refused():
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone = dict(type='ResNet', depth=18, out_indices=(3, ))
    with pytest.raises(TypeError, match='needs a backbone whose forward '
                       'takes valid_sizes'):
        MODELS.build(cfg.model)


def test_learned_token_reducer_loss_is_added():
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.token_reducer = dict(
        type='TPS', blocks=(1, ), keep_ratio=0.5, score='learned')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).train()
    shape = (64, 64)  # unpadded: TPS keeps one token count per batch
    samples = _gt(_samples([shape, shape], shape))
    losses = model.loss(torch.randn(2, 3, *shape), samples)
    assert {'loss_rpn_cls', 'loss_mask', 'loss_tps_ratio'} <= set(losses)
    total, _ = model.parse_losses(losses)
    total.backward()
    predictor = model.backbone.token_reducer.predictors['1']
    assert all(p.grad is not None for p in predictor.parameters())
