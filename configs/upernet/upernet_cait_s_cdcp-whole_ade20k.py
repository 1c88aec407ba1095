# CAIT-S UperNet compressed as a whole: ATME in the backbone and CDCP on the
# backbone's QK, V and MLP channels (upernet_cait_s_cdcp_ade20k.py) and on
# the UperNet head's convs (cait_mm.CAITUPerHead: the PPM convs, the lateral
# convs summed with the PPM bottleneck, the FPN convs and fpn_bottleneck).
# The same hook ramps half of every group, backbone and head, over the first
# 40k iterations. Export the physically smaller backbone and head with
#   python tools/deployment/export_compressed.py CONFIG work_dirs/.../iter_80000.pth OUT
# (the auxiliary head, used only in training, keeps its weights).
_base_ = ['./upernet_cait_s_cdcp_ade20k.py']

model = dict(decode_head=dict(channel_prune=_base_.cdcp_head_prune))
custom_hooks = [dict(_base_.custom_hooks[0], ratios=_base_.cdcp_whole_ratios)]
