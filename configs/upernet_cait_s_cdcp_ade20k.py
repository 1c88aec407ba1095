# CAIT-S UperNet with both halves of CAIT during dense fine-tuning: ATME
# token merging (preset 'deit-s') and CDCP channel pruning. The backbone gets
# identity-initialised compactors for the QK, V and MLP channel groups;
# CDCPHook ramps the pruned fraction of each group from 0 to half over the
# first 40k of the 80k iterations, re-ranking every 1000 iterations, so
# channels that become important again are released. In eval mode (and so in
# every validation) the selected channels are masked: the mIoU logged is the
# pruned model's. Export the physically smaller model afterwards with
#   python tools/export_compressed.py CONFIG work_dirs/.../iter_80000.pth OUT
_base_ = ['./upernet_cait_s_ade20k.py']

model = dict(
    backbone=dict(channel_prune=dict(groups=('qk', 'v', 'mlp'))))
custom_hooks = [
    dict(
        type='cait_mm.CDCPHook',
        ratios=dict(qk=0.5, v=0.5, mlp=0.5),
        interval=1000,
        begin=0,
        end=40000,
        # a selected channel's rows reach zero within about 10k iterations
        lasso=1e-4)
]
# The group lasso is the only pull the compactors should feel: weight decay
# would shrink every compactor towards zero, not just the selected channels.
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'compactor': dict(decay_mult=0.)}))
