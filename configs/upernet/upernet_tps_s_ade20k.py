# TPS-S UperNet: the dense DeiT-S baseline with TPS token pruning and
# squeezing in the backbone (class-token attention scores, training-free;
# blocks 3, 6, 9 keep 0.7 of the tokens each: ../_base_/compression/tps.py).
_base_ = ['./upernet_deit_s_ade20k.py', '../_base_/compression/tps.py']

model = dict(backbone=dict(token_reducer=_base_.tps_attn))
