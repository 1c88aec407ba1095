# Dense DeiT-T UperNet on ADE20K: the DeiT-S baseline's recipe at DeiT-T size
# (mmseg has no DeiT-T UperNet; the heads take 192-channel maps).
_base_ = ['./upernet_deit_s_ade20k.py']

model = dict(
    pretrained='pretrain/deit_tiny_patch16_224-a1311bcf.pth',
    backbone=dict(arch='deit-t'),
    decode_head=dict(in_channels=[192, 192, 192, 192]),
    auxiliary_head=dict(in_channels=192))
