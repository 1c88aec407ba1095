# The CPU recipe of upernet_cait_t_cdcp_dubai_cpu.py (ATME, CDCP on the
# backbone) with CDCP on the UperNet head too (cait_mm.CAITUPerHead): half
# of each head group (PPM convs, laterals with the PPM bottleneck, FPN
# convs, fpn_bottleneck) is selected on the backbone's ramp.
_base_ = ['./upernet_cait_t_cdcp_dubai_cpu.py']

model = dict(decode_head=dict(channel_prune=_base_.cdcp_head_prune))
custom_hooks = [dict(_base_.custom_hooks[0], ratios=_base_.cdcp_whole_ratios)]
