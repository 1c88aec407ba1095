# Dense baseline: mmseg's DeiT-S UperNet (80k, 512x512, 42.96 mIoU in mmseg's
# model zoo) with its ViT replaced by CAITViT in plain DeiT form. Head, neck
# (none), schedule and data pipeline are mmseg's, inherited unchanged.
# `model.pretrained` (inherited) is the official DeiT-S file
# deit_small_patch16_224-cd65a155.pth, which CAITViT reads as it is (mmseg's
# ViT needs it converted by vit2mmseg.py first).
_base_ = ['mmseg::vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py']

custom_imports = dict(imports=['cait_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='cait_mm.CAITViT',
        arch='deit-s',
        img_size=(512, 512),
        out_indices=(2, 5, 8, 11),
        drop_path_rate=0.1,
        final_norm=False,
        interpolate_mode='bicubic'))
