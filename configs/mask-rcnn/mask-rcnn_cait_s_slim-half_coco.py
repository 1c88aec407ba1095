# The architecture an export of mask-rcnn_cait_s_cdcp-whole_coco.py has:
# ATME, half of the QK, V and MLP channels of every block, and half of the
# neck's inner channels, of the RPN conv's channels, of the box head's
# shared FC units and of the mask convs' channels removed. Random weights:
# for speed and FLOPs tables without training one (tools/analysis_tools/benchmark.py);
# evaluate a real export with its training config instead.
_base_ = ['./mask-rcnn_cait_s_coco.py']

model = dict(
    backbone=dict(
        pretrained=None, channel_widths=dict(qk=0.5, v=0.5, mlp=0.5)),
    neck=dict(channel_widths=dict(neck=0.5)),
    rpn_head=dict(channel_widths=dict(rpn=0.5)),
    roi_head=dict(
        bbox_head=dict(channel_widths=dict(fc=0.5)),
        mask_head=dict(channel_widths=dict(mask=0.5))))
