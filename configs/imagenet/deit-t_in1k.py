# Dense DeiT-T on ImageNet-1k, the reference for CAIT-T: ./deit-s_in1k.py
# (mmpretrain's DeiT recipe with CAITViT, see there) at DeiT-T size.
# mmpretrain's deit-tiny_4xb256_in1k.py differs from its small config in
# these two settings only.
_base_ = ['./deit-s_in1k.py']

model = dict(backbone=dict(arch='deit-t'), head=dict(in_channels=192))
