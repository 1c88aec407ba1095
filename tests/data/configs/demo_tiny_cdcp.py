# demo_tiny with CDCP channel pruning (configs/_base_/compression/cdcp.py):
# compactors in every block, half of each group selected from iteration 2
# on, re-ranked every iteration.
_base_ = ['./demo_tiny.py', '../../../configs/_base_/compression/cdcp.py']

model = dict(backbone=dict(channel_prune=_base_.cdcp_channel_prune))
custom_hooks = [dict(_base_.cdcp_hook, interval=1, begin=0, end=2, lasso=0.05)]
optim_wrapper = _base_.cdcp_optim_wrapper
