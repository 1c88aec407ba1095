# UperNet on a DeiT-T CAITViT sized for a CPU (the demo and the CPU recipes):
# 256x256 inputs, no pretrained weights (none can be downloaded here), and
# the heads narrowed (channels 512 -> 128, auxiliary 256 -> 64). Per 256x256
# image the full UperNet head costs 7.0 GMACs against the DeiT-T backbone's
# 1.4: runs would take most of an hour on 2 cores, and the backbone, the
# part compression speeds up, would be 17% of the model (74% with the narrow
# head, 0.5 GMACs; mmengine's FlopAnalyzer).
_base_ = ['./upernet_caitvit_deit_s.py']

model = dict(
    data_preprocessor=dict(size=(256, 256)),
    pretrained=None,
    backbone=dict(arch='deit-t', img_size=(256, 256)),
    decode_head=dict(in_channels=[192, 192, 192, 192], channels=128),
    auxiliary_head=dict(in_channels=192, channels=64))
