# Dense baseline for detection: mmdet's Mask R-CNN (R50-FPN 1x config: heads,
# COCO pipeline up to 1333x800, 12 epochs, steps at 8 and 11) with the ResNet
# and FPN replaced, ViTDet-style, by a plain DeiT-S (cait_mm.CAITViT, no
# compression) and a simple feature pyramid built from its last map
# (1/4, 1/8, 1/16, 1/32, plus 1/64 for the RPN, like FPN with num_outs=5).
# `pretrained` is the official DeiT-S file, read as it is; its 14x14 position
# embeddings are resampled to each input's grid (e.g. 50x84 at 800x1344).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['cait_mm'], allow_failed_imports=False)
default_scope = 'mmdet'

model = dict(
    # mmdet's MaskRCNN, except that the backbone and the neck are told each
    # image's size (img_shape), so that padding in a batch changes nothing.
    type='cait_mm.PadAwareMaskRCNN',
    # 32: the 16-pixel patches tile every padded image and the 1/32 level
    # halves the 1/16 map exactly (as in mmdet's R50 config; the neck also
    # handles odd grids, e.g. in tools/analysis_tools/benchmark.py). 800x1333 -> 800x1344.
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='cait_mm.CAITViT',
        arch='deit-s',
        img_size=224,
        out_indices=(11, ),
        drop_path_rate=0.1,
        final_norm=False,
        pretrained='pretrain/deit_small_patch16_224-cd65a155.pth'),
    neck=dict(
        _delete_=True,
        type='cait_mm.SimpleFeaturePyramid',
        in_channels=384,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5,
        norm_cfg=dict(type='cait_mm.LN2d', eps=1e-6)),
    # mmdet's heads, channel-prunable (CDCP on the RPN conv, the shared FCs
    # and the mask convs; slim widths); as they are, the same parameters and
    # outputs
    rpn_head=dict(type='cait_mm.CAITRPNHead'),
    roi_head=dict(
        bbox_head=dict(type='cait_mm.CAITShared2FCBBoxHead'),
        mask_head=dict(type='cait_mm.CAITFCNMaskHead')))

# AdamW, as ViT detectors are trained (ViTDet; SGD, the R50 base's optimizer,
# trains ViTs poorly), with mmdet's 1x recipe for transformer backbones
# (mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py): lr 1e-4 for a total batch of 16,
# weight decay 0.05 except on position embedding, class token and norms, and
# a 1000-iteration warm-up; plus ViTDet's layer-wise lr decay (0.7 over the
# 12 blocks, ViTDet's rate for 12-block ViTs: the patch embedding trains at
# 0.7^13 of the lr, the neck and heads at the full lr). mmdet ships
# ViTDet's constructor only in projects/, hence cait_mm's.
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='cait_mm.LayerDecayOptimizerConstructor',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(
        decay_rate=0.7,
        norm_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=12,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]

# By default, models are trained on 8 GPUs with 2 images per GPU
train_dataloader = dict(batch_size=2)

# Checkpoints that are complete or absent: written to a temporary file and
# renamed, last_checkpoint updated and old checkpoints removed only then
# (cait_mm.SafeCheckpointHook; MMEngine's CheckpointHook otherwise, with its
# interval and max_keep_ckpts).
default_hooks = dict(checkpoint=dict(type='cait_mm.SafeCheckpointHook'))
