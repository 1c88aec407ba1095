# The detection demo: the Mask R-CNN baseline's recipe (PadAwareMaskRCNN on a
# CAITViT with the simple feature pyramid) at DeiT-T size, trained from
# scratch on the generated shapes' COCO json (5 classes: the background is no
# instance), with narrower heads so that it trains on a CPU. Generate the
# data first:
#   python tools/misc/make_demo_data.py --out data/demo_shapes
_base_ = ['../mask-rcnn/mask-rcnn_deit_s_coco.py']

img_scale = (256, 256)
num_classes = 5
model = dict(
    backbone=dict(
        arch='deit-t', img_size=img_scale, drop_path_rate=0.0,
        pretrained=None),
    neck=dict(in_channels=192, out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(
            in_channels=64, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(
            num_convs=2,
            in_channels=64,
            conv_out_channels=64,
            num_classes=num_classes)),
    # a few shapes per 256x256 scene: fewer proposals and RoI samples
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=200),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=200)))

dataset_type = 'CocoDataset'
data_root = 'data/demo_shapes/'
# cait_mm.datasets.demo_shapes_generator.CLASSES without the background
metainfo = dict(
    classes=('disc', 'square', 'triangle', 'ring', 'cross'),
    palette=[(220, 20, 60), (0, 128, 255), (255, 200, 0), (0, 190, 90),
             (170, 60, 255)])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # several sizes per batch: training sees padded batches
    dict(
        type='RandomResize',
        scale=img_scale,
        ratio_range=(0.75, 1.25),
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_training.json',
        data_prefix=dict(img='images/training/'),
        pipeline=train_pipeline))
# the same scenes' validation split
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(
        train_dataloader['dataset'],
        ann_file='annotations/instances_validation.json',
        data_prefix=dict(img='images/validation/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root +
                     'annotations/instances_validation.json')
test_evaluator = val_evaluator

# From scratch (no pretrained weights offline): a higher learning rate, no
# layer-wise lr decay (it protects pretrained early blocks; here there are
# none), a short warm-up, and the 1x schedule's shape: 12 epochs of 30
# iterations, steps at 8 and 11.
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(
    optimizer=dict(lr=4e-4), paramwise_cfg=dict(decay_rate=1.))
# the baseline's warm-up, shortened, and steps
param_scheduler = [
    dict(_base_.param_scheduler[0], end=100), _base_.param_scheduler[1]
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(interval=4, max_keep_ckpts=2))
randomness = dict(seed=0)
