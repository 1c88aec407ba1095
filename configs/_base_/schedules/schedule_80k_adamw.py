# mmseg's schedule for ViT UperNets: 80k iterations, AdamW, linear warm-up
# then poly decay, no weight decay on position embedding, class token, norms.
_base_ = ['mmseg::_base_/schedules/schedule_80k.py']

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=1500,
        end=80000,
        by_epoch=False,
    )
]

# Checkpoints that are complete or absent: written to a temporary file and
# renamed, last_checkpoint updated and old checkpoints removed only then
# (cait_mm.SafeCheckpointHook; MMEngine's CheckpointHook otherwise, with its
# interval and max_keep_ckpts).
default_hooks = dict(checkpoint=dict(type='cait_mm.SafeCheckpointHook'))
