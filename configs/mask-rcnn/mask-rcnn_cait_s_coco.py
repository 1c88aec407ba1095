# CAIT-S Mask R-CNN: the dense DeiT-S baseline with ATME token merging in the
# backbone (preset schedule 'deit-s'). Merged tokens are restored to the full
# 1/16 grid at the output block, so the neck and heads are the baseline's,
# and padded batches stay exact (merges only pair tokens inside an image).
_base_ = ['./mask-rcnn_deit_s_coco.py', '../_base_/compression/atme.py']

model = dict(
    backbone=dict(
        token_reducer=_base_.atme_deit_s))
