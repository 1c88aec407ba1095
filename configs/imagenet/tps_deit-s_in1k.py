# TPS-S (dTPS) on ImageNet-1k: DeiT-S with token pruning and squeezing at
# blocks 3, 6, 9 (keep 0.7 of the tokens each, compounding), scored by
# learned predictors (../_base_/compression/tps.py: Gumbel top-k in
# training, top-k at inference, plus the keep-ratio loss `loss_tps_ratio`
# that the classifier adds to its losses). As in DynamicViT, whose recipe TPS
# follows: fine-tune the official DeiT-S for 30 epochs with soft
# distillation of the logits from the dense DeiT-S; the rest is the dense
# recipe (./deit-s_in1k.py).
_base_ = ['./deit-s_in1k.py', '../_base_/compression/tps.py']

deit = 'pretrain/deit_small_patch16_224-cd65a155.pth'

model = dict(
    type='cait_mm.DistillImageClassifier',
    backbone=dict(token_reducer=_base_.tps_learned, pretrained=deit),
    head=dict(
        loss=dict(loss_weight=0.5),
        init_cfg=dict(type='cait_mm.PretrainedHead', checkpoint=deit)),
    teacher=dict(
        type='cait_mm.TimmTeacher',
        model='deit_small_patch16_224',
        checkpoint=deit),
    distill_loss=dict(
        type='cait_mm.DistillationLoss',
        mode='soft',
        temperature=1.0,
        loss_weight=0.5))

train_cfg = dict(max_epochs=30)
