# TPS-S UperNet: the dense DeiT-S baseline with TPS token pruning and
# squeezing in the backbone (class-token attention scores, training-free;
# blocks 3, 6, 9 keep 0.7 of the tokens each). Pruned tokens are squeezed
# into their hosts and every out_indices map is restored to the full 1/16
# grid through the hosts.
_base_ = ['./upernet_deit_s_ade20k.py']

model = dict(
    backbone=dict(
        token_prune=dict(blocks=(3, 6, 9), keep_ratio=0.7, score='attn')))
