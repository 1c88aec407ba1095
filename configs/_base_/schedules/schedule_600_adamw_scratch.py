# Training from scratch on a CPU (the demo and the CPU recipes; no weights
# can be downloaded here): the 2k fine-tuning schedule (./schedule_2k_adamw.py)
# with the from-scratch learning rate and weight decay, a warm-up from 1e-3
# of it over 50 iterations, 600 iterations in all, validated at the end and
# saved every 200.
_base_ = ['./schedule_2k_adamw.py']

max_iters = 600
warmup_iters = 50
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-3, end=warmup_iters),
    dict(_base_.param_scheduler[1], begin=warmup_iters, end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=200))
