# ToMe-S UperNet: the dense DeiT-S baseline with ToMe (bipartite soft
# matching of tokens in every block) in the backbone,
# at the block FLOPs of the ATME preset (../_base_/compression/peers.py).
# Reduced tokens are restored to the full 1/16 grid through the source map,
# so the head is the dense model's.
_base_ = ['./upernet_deit_s_ade20k.py', '../_base_/compression/peers.py']

model = dict(backbone=dict(token_reducer=_base_.tome_deit_s))
