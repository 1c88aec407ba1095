# CAIT-S UperNet on Cityscapes, 512x1024 crops: the ADE20K model and schedule
# with mmseg's Cityscapes data. Whole 1024x2048 images would be 64x128 token
# grids; like mmseg's ViT Cityscapes configs, test slides 512x1024 windows.
_base_ = [
    '../_base_/models/upernet_caitvit_deit_s.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/schedule_80k_adamw.py',
    '../_base_/compression/atme.py',
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        img_size=crop_size,
        token_reducer=_base_.atme_deit_s),
    decode_head=dict(num_classes=19),
    auxiliary_head=dict(num_classes=19),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 683)))
train_dataloader = dict(batch_size=2)
