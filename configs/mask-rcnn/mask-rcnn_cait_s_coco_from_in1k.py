# CAIT-S Mask R-CNN on COCO, initialised from the ImageNet compression stage:
# the same compressed checkpoint as
# ../upernet/upernet_cait_s_ade20k_from_in1k.py
# (configs/imagenet/cait_deit-s_in1k.py, exported by
# tools/deployment/export_compressed.py). CAITViT reads the compact widths and the
# token reducer it was trained with from the file's metadata when it is
# built, and loads its `backbone.*` weights in init_weights (the classifier
# head is not read; position embeddings are resampled to each input's grid).
_base_ = ['./mask-rcnn_cait_s_coco.py']

model = dict(
    backbone=dict(
        pretrained=None,
        token_reducer=None,  # the file's (ATME 'deit-s', as it was trained)
        compressed='checkpoints/cait_deit-s_in1k.pth'))
