# CPU recipe on the ISBI 2012 membranes with both halves of CAIT: ATME
# (upernet_cait_t_membrane_cpu.py) and CDCP channel pruning. Half of the QK, V
# and MLP channels of every block are selected by iteration 400 of 600
# (ramp from iteration 100, re-ranked every 50), and the lasso takes a
# selected channel's compactor rows to zero within about 200 iterations, so
# the export at the end removes channels that no longer contribute.
_base_ = ['./upernet_cait_t_membrane_cpu.py']

model = dict(
    backbone=dict(channel_prune=dict(groups=('qk', 'v', 'mlp'))))
custom_hooks = [
    dict(
        type='cait_mm.CDCPHook',
        ratios=dict(qk=0.5, v=0.5, mlp=0.5),
        interval=50,
        begin=100,
        end=400,
        lasso=5e-3)
]
# the group lasso is the only pull the compactors should feel
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'compactor': dict(decay_mult=0.)}))
