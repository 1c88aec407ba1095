# The peers of ATME and TPS (docs/guides/reducers.md), set at the block FLOPs
# of the ATME preset of the same size at 512x512 (tools/analysis_tools/match_flops.py; 0.495 of
# the dense blocks for DeiT-S, 0.521 for DeiT-T), so that rows compare at
# equal FLOPs. Both are training-free too (no weights of their own).
#
# ToMe: bipartite soft matching in every block; `ratio` merges that share of
# the tokens entering each block, so that training on crops and testing on
# whole images reduce alike (the paper's constant `r` is in the core too).
tome_deit_s = dict(type='ToMe', ratio=0.1056)
tome_deit_t = dict(type='ToMe', ratio=0.0888)
# EViT: at blocks 3, 6 and 9, keep the tokens the class token attends to
# most and fuse the rest into one token.
evit_deit_s = dict(type='EViT', blocks=(3, 6, 9), keep_ratio=0.54)
evit_deit_t = dict(type='EViT', blocks=(3, 6, 9), keep_ratio=0.602)
