# CPU recipe on the ISBI 2012 membranes with TPS token pruning and squeezing
# (class-token attention scores; blocks 3, 6, 9 keep 0.7 each):
# upernet_deit_t_membrane_cpu.py, nothing else changed.
_base_ = ['./upernet_deit_t_membrane_cpu.py']

model = dict(
    backbone=dict(
        token_prune=dict(blocks=(3, 6, 9), keep_ratio=0.7, score='attn')))
