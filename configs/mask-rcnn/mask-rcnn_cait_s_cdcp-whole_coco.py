# CAIT-S Mask R-CNN compressed as a whole: ATME in the backbone
# (mask-rcnn_cait_s_coco.py), CDCP on the backbone's QK, V and MLP channels
# and on the neck's and heads' channels (each pyramid level's inner
# channels, the RPN conv, the box head's shared FCs, the mask convs;
# ../_base_/compression/cdcp.py). Half of every group is
# selected by iteration 30k of the 1x schedule's ~88k (re-ranked every
# 1000), and the lasso takes a selected channel's rows to zero within about
# 10k iterations. Export the smaller backbone and heads with
#   python tools/deployment/export_compressed.py CONFIG work_dirs/.../epoch_12.pth OUT
_base_ = ['./mask-rcnn_cait_s_coco.py', '../_base_/compression/cdcp.py']

model = dict(
    backbone=dict(channel_prune=_base_.cdcp_channel_prune),
    **_base_.cdcp_det_heads)
custom_hooks = [
    dict(
        _base_.cdcp_hook,
        ratios=_base_.cdcp_det_ratios,
        interval=1000,
        begin=0,
        end=30000,
        lasso=1e-4)
]
optim_wrapper = _base_.cdcp_optim_wrapper
