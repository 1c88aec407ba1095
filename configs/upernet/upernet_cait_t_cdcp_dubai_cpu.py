# CPU recipe on the Dubai aerial tiles with both halves of CAIT: ATME
# (upernet_cait_t_dubai_cpu.py) and CDCP channel pruning with the CPU
# recipe's hook (../_base_/compression/cdcp.py): half of the QK, V and MLP
# channels of every block are selected by iteration 400 of 600 (ramp from
# iteration 100, re-ranked every 50), and the lasso takes a selected
# channel's compactor rows to zero within about 200 iterations, so the
# export at the end removes channels that no longer contribute.
_base_ = ['./upernet_cait_t_dubai_cpu.py', '../_base_/compression/cdcp.py']

model = dict(backbone=dict(channel_prune=_base_.cdcp_channel_prune))
custom_hooks = [_base_.cdcp_hook_cpu]
optim_wrapper = _base_.cdcp_optim_wrapper
