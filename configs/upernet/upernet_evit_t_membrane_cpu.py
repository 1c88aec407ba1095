# CPU recipe on the ISBI 2012 membranes with EViT (keep the tokens the class
# token attends to, fuse the rest): upernet_deit_t_membrane_cpu.py with the
# reducer,
# at the block FLOPs of the ATME preset (../_base_/compression/peers.py).
# Reduced tokens are restored to the full 1/16 grid through the source map,
# so the head is the dense model's.
_base_ = ['./upernet_deit_t_membrane_cpu.py', '../_base_/compression/peers.py']

model = dict(backbone=dict(token_reducer=_base_.evit_deit_t))
