# Dense DeiT-B UperNet on ADE20K: mmseg's vit_deit-b16_upernet recipe (no
# neck, 768-channel heads) on CAITViT.
_base_ = ['./upernet_deit_s_ade20k.py']

model = _base_.upernet_deit_b
