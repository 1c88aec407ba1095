# CAIT-S UperNet on ADE20K, initialised from the ImageNet compression stage:
# the one compressed checkpoint that configs/imagenet/cait_deit-s_in1k.py
# trains and tools/deployment/export_compressed.py writes. CAITViT reads the compact
# widths and the token reducer it was trained with from the file's metadata
# when it is built, and loads its `backbone.*` weights in init_weights (the
# classifier head is not read; position embeddings are resampled from 14x14
# to 32x32).
_base_ = ['./upernet_cait_s_ade20k.py']

model = dict(
    pretrained=None,
    backbone=dict(
        token_reducer=None,  # the file's (ATME 'deit-s', as it was trained)
        compressed='checkpoints/cait_deit-s_in1k.pth'))
