# The CPU-sized recipe for the ISBI membranes: upernet_deit_t_membrane.py
# trained from scratch on 256x256 crops (same scale range) with a narrower
# UperNet head, batch 8, 600 iterations, evaluated on the whole 512x512
# slices. Minutes on 2 cores.
#
# From scratch because no weights can be downloaded here, so the learning
# rate is the demo's from-scratch one, not the fine-tuning one. With the
# DeiT-T file in pretrain/, fine-tune instead:
#   python tools/train.py configs/upernet_deit_t_membrane_cpu.py \
#       --cfg-options \
#       model.pretrained=pretrain/deit_tiny_patch16_224-a1311bcf.pth \
#       optim_wrapper.optimizer.lr=6e-5 \
#       optim_wrapper.optimizer.weight_decay=0.01
_base_ = ['./upernet_deit_t_membrane.py']

crop_size = (256, 256)
# The head narrowed as in the demo (channels 512 -> 128, auxiliary 256 ->
# 64). Per 256x256 image the full UperNet head costs 7.0 GMACs against the
# DeiT-T backbone's 1.4: runs would take most of an hour on 2 cores, and the
# backbone, the part compression speeds up, would be 17% of the model
# (74% with the narrow head, 0.5 GMACs; mmengine's FlopAnalyzer).
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=crop_size),
    decode_head=dict(channels=128),
    auxiliary_head=dict(channels=64))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(512, 512),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=2)
test_dataloader = val_dataloader

max_iters = 600
warmup_iters = 50
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
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
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=200, max_keep_ckpts=2))
