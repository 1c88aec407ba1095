# Fine-tuning on the small real datasets (ISBI membranes, Dubai tiles):
# mmseg's ViT UperNet schedule (./schedule_80k_adamw.py: AdamW at the
# fine-tuning lr, linear warm-up, poly decay) shortened to 2k iterations with
# a 150-iteration warm-up, validated and saved every 500, and seeded, so
# that the rows of an experiment differ only in what they compress.
_base_ = ['./schedule_80k_adamw.py']

max_iters = 2000
warmup_iters = 150
param_scheduler = [
    dict(_base_.param_scheduler[0], end=warmup_iters),
    dict(_base_.param_scheduler[1], begin=warmup_iters, end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=500)
default_hooks = dict(
    logger=dict(interval=20), checkpoint=dict(interval=500, max_keep_ckpts=2))
randomness = dict(seed=0)
