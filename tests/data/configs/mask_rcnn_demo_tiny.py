# The Mask R-CNN demo config shrunk for tests: a 4-block ViT, narrow heads,
# 64x64 scenes, one epoch of 4 iterations (8 images, batch 2).
_base_ = ['../../../configs/demo/mask-rcnn_deit_t_demo_shapes.py']

img_scale = (64, 64)
model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=64,
            num_layers=4,
            num_heads=2,
            mlp_ratio=2.),
        img_size=img_scale,
        out_indices=(3, )),
    neck=dict(in_channels=64, out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=200, max_per_img=100),
        rcnn=dict(sampler=dict(num=32))),
    # An untrained model's class scores may all fall below mmdet's 0.05,
    # and CocoMetric reports no mAP for an empty result set.
    test_cfg=dict(
        rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(score_thr=0.0)))
# the demo's pipelines at this size
train_pipeline = [
    dict(t, scale=img_scale) if 'scale' in t else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=img_scale) if 'scale' in t else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4)
]
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=1))
