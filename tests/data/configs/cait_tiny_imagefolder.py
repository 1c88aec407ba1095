# The CAIT ImageNet stage shrunk for tests:
# configs/imagenet/cait_deit-t_in1k.py (ATME + CDCPHook + distillation,
# DeiT's pipeline and batch augments) with a 4-block ViT on 64x64 images of
# a generated class-folder set. The test sets the data root and the
# DeiT-format file (student init, head, teacher).
_base_ = ['../../../configs/imagenet/cait_deit-t_in1k.py']

arch = dict(embed_dims=64, num_layers=4, num_heads=2, mlp_ratio=2.)
num_classes = 6
img = 64

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, **arch),
        img_size=img,
        drop_path_rate=0.,
        token_reducer=dict(schedule=[(1, 'h', 0.5), (2, 'v', 0.5)])),
    head=dict(num_classes=num_classes, in_channels=arch['embed_dims']),
    teacher=dict(
        model='deit_tiny_patch16_224',
        img_size=img,
        embed_dim=arch['embed_dims'],
        depth=arch['num_layers'],
        num_heads=arch['num_heads'],
        mlp_ratio=arch['mlp_ratio'],
        num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=73,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root='data/imagefolder',
        data_prefix='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root='data/imagefolder',
        data_prefix='val',
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# 24 training images at batch 8: 3 iterations per epoch, 2 epochs.
train_cfg = dict(max_epochs=2, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=2),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=2)
]
# the stage's CDCPHook (a quarter of each group) on this 6-iteration run
custom_hooks = [
    dict(_base_.custom_hooks[0], interval=2, begin=0, end=4, lasso=0.2)
]
default_hooks = dict(logger=dict(interval=1))
randomness = dict(seed=0)
