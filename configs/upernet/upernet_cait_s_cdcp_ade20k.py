# CAIT-S UperNet with both halves of CAIT during dense fine-tuning: ATME
# token merging (preset 'deit-s') and CDCP channel pruning (compactors for
# the QK, V and MLP groups, no weight decay on them: ../_base_/compression/
# cdcp.py). CDCPHook ramps the pruned fraction of each group from 0 to half
# over the first 40k of the 80k iterations, re-ranking every 1000 iterations;
# a selected channel's rows reach zero within about 10k iterations. In eval
# mode (and so in every validation) the selected channels are masked: the
# mIoU logged is the pruned model's. Export the physically smaller model
# afterwards with
#   python tools/deployment/export_compressed.py CONFIG work_dirs/.../iter_80000.pth OUT
_base_ = ['./upernet_cait_s_ade20k.py', '../_base_/compression/cdcp.py']

model = dict(backbone=dict(channel_prune=_base_.cdcp_channel_prune))
custom_hooks = [
    dict(_base_.cdcp_hook, interval=1000, begin=0, end=40000, lasso=1e-4)
]
optim_wrapper = _base_.cdcp_optim_wrapper
