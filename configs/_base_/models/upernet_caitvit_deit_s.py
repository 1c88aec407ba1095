# UperNet on a DeiT-S CAITViT, as in mmseg's vit_deit-s16_upernet config:
# mmseg's ViT UperNet model base with the backbone replaced, no neck (UperNet
# fuses the four 1/16 maps itself), 384-channel inputs to the heads.
_base_ = ['mmseg::_base_/models/upernet_vit-b16_ln_mln.py']

custom_imports = dict(imports=['cait_mm'], allow_failed_imports=False)

model = dict(
    pretrained='pretrain/deit_small_patch16_224-cd65a155.pth',
    backbone=dict(
        _delete_=True,
        type='cait_mm.CAITViT',
        arch='deit-s',
        img_size=(512, 512),
        out_indices=(2, 5, 8, 11),
        drop_path_rate=0.1,
        final_norm=False,
        interpolate_mode='bicubic'),
    neck=None,
    decode_head=dict(in_channels=[384, 384, 384, 384]),
    auxiliary_head=dict(in_channels=384))
