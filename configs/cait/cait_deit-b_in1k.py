# CAIT-B on ImageNet-1k: the compression stage. The dense DeiT-B recipe
# (./deit-b_in1k.py) applied to a student that starts from the official
# DeiT-B weights, merges tokens with ATME (preset 'deit-b'), prunes channels
# with CDCP, and learns from the dense DeiT-B (hard distillation of the class
# token's logits). Export the result once (tools/export_compressed.py) and
# initialise every dense task from that file (model.backbone.compressed=...).
_base_ = ['./deit-b_in1k.py']

deit = 'pretrain/deit_base_patch16_224-b5f2ef4d.pth'

model = dict(
    type='cait_mm.DistillImageClassifier',
    backbone=dict(
        token_merge=dict(schedule='deit-b', granularity='token'),
        channel_prune=dict(groups=('qk', 'v', 'mlp')),
        pretrained=deit),
    head=dict(
        # DeiT: (1 - alpha) * classification + alpha * distillation
        loss=dict(loss_weight=0.5),
        init_cfg=dict(type='cait_mm.PretrainedHead', checkpoint=deit)),
    teacher=dict(
        type='cait_mm.TimmTeacher',
        model='deit_base_patch16_224',
        checkpoint=deit),
    distill_loss=dict(
        type='cait_mm.DistillationLoss', mode='hard', loss_weight=0.5))

# CDCP, in iterations: ImageNet-1k has 1,281,167 training images, 1251
# iterations per epoch at batch 1024 (rescale these with the batch size).
# Channels are re-ranked every epoch; the pruned fraction ramps from 0 after
# the 5 warm-up epochs to its final value at epoch 100, and a channel that
# stays selected reaches zero in 1 / lasso = 10k iterations (8 epochs). The
# ratios are our starting point (the paper gives no per-group values);
# measure what they buy with tools/benchmark.py.
iters_per_epoch = 1251
# This replaces mmpretrain's DeiT-B EMAHook too: an average of compactor
# weights over changing selections is not a model CDCP selected.
custom_hooks = [
    dict(
        type='cait_mm.CDCPHook',
        ratios=dict(qk=0.25, v=0.25, mlp=0.25),
        interval=iters_per_epoch,
        begin=5 * iters_per_epoch,
        end=100 * iters_per_epoch,
        lasso=1e-4)
]

# No weight decay on the compactors: the group lasso of CDCPHook is meant to
# be the only pull on them. Their row norms rank the channels, and pruned
# rows get no task gradient, so decay would shrink every channel, kept ones
# included, and move pruned ones on a schedule nobody chose.
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'compactor': dict(decay_mult=0.0)}))
