# Dense DeiT-B UperNet on ADE20K: mmseg's vit_deit-b16_upernet recipe (no
# neck, 768-channel heads) on CAITViT.
_base_ = ['./upernet_deit_s_ade20k.py']

model = dict(
    pretrained='pretrain/deit_base_patch16_224-b5f2ef4d.pth',
    backbone=dict(arch='deit-b'),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768))
