# CAIT-B on ImageNet-1k: ./cait_deit-s_in1k.py (the compression stage, see
# there) at DeiT-B size: DeiT-B student, teacher and weights, ATME preset
# 'deit-b', and DeiT-B's 16 x 64 images a batch (1024 in total, as before).
# Unlike the dense DeiT-B (./deit-b_in1k.py) there is no EMA hook: an average
# of compactor weights over changing selections is not a model CDCP selected.
_base_ = ['./cait_deit-s_in1k.py']

deit = 'pretrain/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(
    backbone=dict(
        arch='deit-b', token_reducer=dict(schedule='deit-b'), pretrained=deit),
    head=dict(in_channels=768, init_cfg=dict(checkpoint=deit)),
    teacher=dict(model='deit_base_patch16_224', checkpoint=deit))
train_dataloader = dict(batch_size=64)
