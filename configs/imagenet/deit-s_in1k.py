# Dense DeiT-S on ImageNet-1k, the reference for CAIT-S: mmpretrain's DeiT
# recipe (deit-small_4xb256_in1k.py: AdamW, lr 5e-4 x 1024 / 512, weight
# decay 0.05, cosine to 1e-5, 300 epochs, batch 1024 in total, RandAugment,
# random erasing, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, top-1/top-5)
# with mmpretrain's VisionTransformer replaced by cait_mm.CAITViT in plain
# DeiT form. Two changes bring it back to DeiT's own recipe: drop path 0.1
# for every size (mmpretrain leaves it out for T and S) and 5 warm-up epochs
# (mmpretrain's schedule base, written for Swin, has 20).
# Data: data/imagenet, as class folders or with meta/{train,val}.txt lists.
_base_ = ['mmpretrain::deit/deit-small_4xb256_in1k.py']

custom_imports = dict(imports=['cait_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='cait_mm.CAITViT',
        arch='deit-s',
        img_size=224,
        patch_size=16,
        out_type='cls_token',  # (B, C) class token for the linear head
        final_norm=True,
        drop_path_rate=0.1),
    head=dict(in_channels=384))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=5,
        convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5)
]

# Checkpoints that are complete or absent: written to a temporary file and
# renamed, last_checkpoint updated and old checkpoints removed only then
# (cait_mm.SafeCheckpointHook; MMEngine's CheckpointHook otherwise, with its
# interval and max_keep_ckpts).
default_hooks = dict(checkpoint=dict(type='cait_mm.SafeCheckpointHook'))
