# demo_tiny with CDCP channel pruning (configs/_base_/compression/cdcp.py)
# of the whole model: compactors in every block and on the UperNet head's
# convs, half of each group selected from iteration 2 on, re-ranked every
# iteration.
_base_ = ['./demo_tiny.py', '../../../configs/_base_/compression/cdcp.py']

model = dict(
    backbone=dict(channel_prune=_base_.cdcp_channel_prune),
    decode_head=dict(channel_prune=_base_.cdcp_head_prune))
custom_hooks = [
    dict(
        _base_.cdcp_hook,
        ratios=_base_.cdcp_whole_ratios,
        interval=1,
        begin=0,
        end=2,
        lasso=0.05)
]
optim_wrapper = _base_.cdcp_optim_wrapper
