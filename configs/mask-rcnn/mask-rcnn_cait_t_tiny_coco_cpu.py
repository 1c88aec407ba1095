# CAIT-T Mask R-CNN on tiny COCO: the dense CPU recipe with ATME in the
# backbone (preset schedule 'deit-t'); merged tokens are restored to the 1/16
# grid before the neck.
_base_ = ['./mask-rcnn_deit_t_tiny_coco_cpu.py']

model = dict(
    backbone=dict(
        token_reducer=dict(
            type='ATME', schedule='deit-t', granularity='token')))
