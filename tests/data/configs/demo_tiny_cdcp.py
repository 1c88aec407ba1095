# demo_tiny with CDCP channel pruning: compactors in every block, half of
# each group selected from iteration 2 on, re-ranked every iteration.
_base_ = ['./demo_tiny.py']

model = dict(
    backbone=dict(channel_prune=dict(groups=('qk', 'v', 'mlp'))))
custom_hooks = [
    dict(
        type='cait_mm.CDCPHook',
        ratios=dict(qk=0.5, v=0.5, mlp=0.5),
        interval=1,
        begin=0,
        end=2,
        lasso=0.05)
]
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'compactor': dict(decay_mult=0.)}))
