# UperNet on a DeiT-S CAITViT, as in mmseg's vit_deit-s16_upernet config:
# mmseg's ViT UperNet model base with the backbone replaced, no neck (UperNet
# fuses the four 1/16 maps itself), 384-channel inputs to the heads, 512x512
# inputs (mmseg sets the preprocessor's size in each config; the backbone's
# img_size already fixes it here, so configs that keep 512x512 need not).
_base_ = ['mmseg::_base_/models/upernet_vit-b16_ln_mln.py']

custom_imports = dict(imports=['cait_mm'], allow_failed_imports=False)

data_preprocessor = dict(size=(512, 512))
model = dict(
    # mmseg's EncoderDecoder plus reducer losses, without the resize of
    # logits already at the image's size: dense and compressed alike
    type='cait_mm.TokenReducerEncoderDecoder',
    data_preprocessor=data_preprocessor,
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
    # mmseg's UPerHead, channel-prunable (CDCP on its convs, slim widths);
    # as it is, the same parameters and outputs
    decode_head=dict(
        type='cait_mm.CAITUPerHead', in_channels=[384, 384, 384, 384]),
    auxiliary_head=dict(in_channels=384))

# The other DeiT sizes, as a config merges them into `model`
# (`model = _base_.upernet_deit_t`): their official weights, the backbone's
# arch, and heads that take its maps' width (mmseg has no DeiT-T UperNet).
upernet_deit_t = dict(
    pretrained='pretrain/deit_tiny_patch16_224-a1311bcf.pth',
    backbone=dict(arch='deit-t'),
    decode_head=dict(in_channels=[192, 192, 192, 192]),
    auxiliary_head=dict(in_channels=192))
upernet_deit_b = dict(
    pretrained='pretrain/deit_base_patch16_224-b5f2ef4d.pth',
    backbone=dict(arch='deit-b'),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768))
# mmseg's vit_vit-b16_mln_upernet structure: ViT-B (DeiT-B's architecture,
# mmseg's drop path 0) with the model base's MultiLevelNeck (the four 1/16
# maps at 4x, 2x, 1x and 0.5x) in front of 768-channel heads, and mmseg's
# pretrained file name (vit2mmseg.py's output; CAITViT reads it as it is, as
# it reads timm's ViT-B file).
upernet_vit_b_mln = dict(
    pretrained='pretrain/vit_base_patch16_224.pth',
    backbone=dict(arch='deit-b', drop_path_rate=0.),
    neck=dict(_delete_=True, **_base_.model.neck),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768))
