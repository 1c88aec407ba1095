# Dense DeiT-B on ImageNet-1k, the reference for CAIT-B: ./deit-s_in1k.py
# (mmpretrain's DeiT recipe with CAITViT, see there) at DeiT-B size, with
# what mmpretrain's deit-base_16xb64_in1k.py changes from its small config:
# 16 x 64 images a batch (1024 in total, as before) and an EMA of the weights.
_base_ = ['./deit-s_in1k.py']

model = dict(backbone=dict(arch='deit-b'), head=dict(in_channels=768))
train_dataloader = dict(batch_size=64)
custom_hooks = [dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL')]
