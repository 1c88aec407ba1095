# The demo: the dense baseline's recipe (UperNet on CAITViT) at DeiT-T size,
# trained from scratch on the generated shapes dataset, sized for a CPU
# (about 10 minutes on 2 cores). Generate the data first:
#   python tools/make_demo_data.py --out data/demo_shapes
_base_ = ['../upernet_deit_s_ade20k.py']

crop_size = (256, 256)
num_classes = 6

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        arch='deit-t', img_size=crop_size, drop_path_rate=0.0),
    decode_head=dict(
        in_channels=[192, 192, 192, 192],
        channels=128,
        num_classes=num_classes,
        dropout_ratio=0.0),
    auxiliary_head=dict(
        in_channels=192,
        channels=64,
        num_classes=num_classes,
        dropout_ratio=0.0))

dataset_type = 'cait_mm.DemoShapesDataset'
data_root = 'data/demo_shapes'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=crop_size,
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# From scratch (no pretrained weights offline), so a higher learning rate
# and a short schedule.
max_iters = 600
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=50,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=200, max_keep_ckpts=2))
randomness = dict(seed=0)
