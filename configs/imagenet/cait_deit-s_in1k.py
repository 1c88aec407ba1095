# CAIT-S on ImageNet-1k: the compression stage. The dense DeiT-S recipe
# (./deit-s_in1k.py) applied to a student that starts from the official
# DeiT-S weights, merges tokens with ATME (preset 'deit-s'), prunes channels
# with CDCP (../_base_/compression/cdcp.py: compactors for the QK, V and MLP
# groups, no weight decay on them), and learns from the dense DeiT-S (hard
# distillation of the class token's logits). Export the result once
# (tools/deployment/export_compressed.py) and initialise every dense task from that
# file (model.backbone.compressed=...).
_base_ = [
    './deit-s_in1k.py', '../_base_/compression/cdcp.py',
    '../_base_/compression/atme.py'
]

deit = 'pretrain/deit_small_patch16_224-cd65a155.pth'

model = dict(
    type='cait_mm.DistillImageClassifier',
    backbone=dict(
        token_reducer=_base_.atme_deit_s,
        channel_prune=_base_.cdcp_channel_prune,
        pretrained=deit),
    head=dict(
        # DeiT: (1 - alpha) * classification + alpha * distillation
        loss=dict(loss_weight=0.5),
        init_cfg=dict(type='cait_mm.PretrainedHead', checkpoint=deit)),
    teacher=dict(
        type='cait_mm.TimmTeacher',
        model='deit_small_patch16_224',
        checkpoint=deit),
    distill_loss=dict(
        type='cait_mm.DistillationLoss', mode='hard', loss_weight=0.5))

# CDCP, in iterations: ImageNet-1k has 1,281,167 training images, 1251
# iterations per epoch at batch 1024 (rescale these with the batch size).
# Channels are re-ranked every epoch; the pruned fraction ramps from 0 after
# the 5 warm-up epochs to its final value at epoch 100, and a channel that
# stays selected reaches zero in 1 / lasso = 10k iterations (8 epochs). The
# ratios are our starting point (the paper gives no per-group values);
# measure what they buy with tools/analysis_tools/benchmark.py.
iters_per_epoch = 1251
custom_hooks = [
    dict(
        _base_.cdcp_hook,
        ratios=dict(qk=0.25, v=0.25, mlp=0.25),
        interval=iters_per_epoch,
        begin=5 * iters_per_epoch,
        end=100 * iters_per_epoch,
        lasso=1e-4)
]
optim_wrapper = _base_.cdcp_optim_wrapper
