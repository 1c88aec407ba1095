# TPS token pruning and squeezing (docs/guides/tps.md) as the TPS configs use it:
# DynamicViT's three stages, blocks 3, 6 and 9 each keeping 0.7 of the
# tokens (compounding). The pruned tokens are squeezed into their hosts and
# every out_indices map is restored to the full 1/16 grid through the hosts.
# Scores: the class token's attention (training-free, so it also applies to
# a dense checkpoint at test time) or learned predictors (dTPS: Gumbel top-k
# in training plus a keep-ratio loss; they need training, e.g. the ImageNet
# stage).
tps_attn = dict(type='TPS', blocks=(3, 6, 9), keep_ratio=0.7, score='attn')
tps_learned = dict(tps_attn, score='learned')
