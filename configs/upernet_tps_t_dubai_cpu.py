# CPU recipe on the Dubai aerial tiles with TPS token pruning and squeezing
# (class-token attention scores; blocks 3, 6, 9 keep 0.7 each):
# upernet_deit_t_dubai_cpu.py, nothing else changed.
_base_ = ['./upernet_deit_t_dubai_cpu.py']

model = dict(
    backbone=dict(
        token_prune=dict(blocks=(3, 6, 9), keep_ratio=0.7, score='attn')))
