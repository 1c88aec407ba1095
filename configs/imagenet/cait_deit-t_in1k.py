# CAIT-T on ImageNet-1k: ./cait_deit-s_in1k.py (the compression stage, see
# there) at DeiT-T size: DeiT-T student, teacher and weights, ATME preset
# 'deit-t'.
_base_ = ['./cait_deit-s_in1k.py']

deit = 'pretrain/deit_tiny_patch16_224-a1311bcf.pth'
model = dict(
    backbone=dict(
        arch='deit-t', token_reducer=dict(schedule='deit-t'), pretrained=deit),
    head=dict(in_channels=192, init_cfg=dict(checkpoint=deit)),
    teacher=dict(model='deit_tiny_patch16_224', checkpoint=deit))
