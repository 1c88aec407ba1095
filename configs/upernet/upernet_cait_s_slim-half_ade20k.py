# The architecture an export of upernet_cait_s_cdcp-whole_ade20k.py has:
# ATME, half of the QK, V and MLP channels of every block and half of the
# channels of every UperNet head conv removed. Random weights: for speed
# and FLOPs tables without training one (tools/analysis_tools/benchmark.py,
# tools/analysis_tools/get_flops.py); evaluate a real export with its
# training config instead.
_base_ = ['./upernet_cait_s_ade20k.py']

model = dict(
    pretrained=None,
    backbone=dict(channel_widths=dict(qk=0.5, v=0.5, mlp=0.5)),
    decode_head=dict(
        channel_widths=dict(ppm=0.5, lateral=0.5, fpn=0.5, fuse=0.5)))
