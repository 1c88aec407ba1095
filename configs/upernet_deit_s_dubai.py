# UperNet DeiT-S on the Dubai aerial tiles (6 classes; tiles 1-6 train, 7-8
# validate, cut into 512x512 crops by the converter): the ADE20K baseline
# with only the data and the schedule changed. This is the full-size (GPU)
# recipe: 512x512 crops, batch 8, 2k iterations, fine-tuned from the DeiT-S
# ImageNet weights (`model.pretrained`, inherited). The CPU-sized recipe is
# upernet_deit_t_dubai_cpu.py.
#
# Prepare the data (nothing is downloaded):
#   python tools/dataset_converters/dubai_aerial.py --src SRC \
#       --out data/dubai_aerial
# Without the DeiT file, train from scratch, with the from-scratch learning
# rate of the CPU recipe:
#   python tools/train.py configs/upernet_deit_s_dubai.py --cfg-options \
#       model.pretrained=None optim_wrapper.optimizer.lr=1e-3 \
#       optim_wrapper.optimizer.weight_decay=0.05
_base_ = ['./upernet_deit_s_ade20k.py']

num_classes = 6
model = dict(
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))

dataset_type = 'cait_mm.DubaiAerialDataset'
data_root = 'data/dubai_aerial'
# The crops' native size. The tiles differ in ground resolution, hence
# ADE20K's wide scale range; top-down images have no up or down, hence both
# flips.
native_scale = (512, 512)
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=native_scale,
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
# Whole crops at their native size.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# data_prefix: ADE20K's layout, inherited.
train_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type=dataset_type, data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type, data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 2000
warmup_iters = 150
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=warmup_iters,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=500)
default_hooks = dict(
    logger=dict(interval=20), checkpoint=dict(interval=500, max_keep_ckpts=2))
randomness = dict(seed=0)
