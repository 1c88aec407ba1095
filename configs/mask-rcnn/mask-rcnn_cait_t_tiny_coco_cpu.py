# CAIT-T Mask R-CNN on tiny COCO: the dense CPU recipe with ATME in the
# backbone (preset schedule 'deit-t'); merged tokens are restored to the 1/16
# grid before the neck.
_base_ = [
    './mask-rcnn_deit_t_tiny_coco_cpu.py',
    '../_base_/compression/atme.py',
]

model = dict(
    backbone=dict(
        token_reducer=_base_.atme_deit_t))
