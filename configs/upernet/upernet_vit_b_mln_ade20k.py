# mmseg's ViT-B UperNet with MultiLevelNeck on ADE20K
# (vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py) on CAITViT: the DeiT-S
# baseline's data, runtime and schedule (mmseg's, the same in both), mmseg's
# neck and heads at ViT-B width. A checkpoint trained with mmseg's config
# loads into this one as it is (docs/guides/byom.md).
_base_ = ['./upernet_deit_s_ade20k.py']

model = _base_.upernet_vit_b_mln
