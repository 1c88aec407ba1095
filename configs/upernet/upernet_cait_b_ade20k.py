# CAIT-B UperNet: the dense DeiT-B UperNet with ATME (preset 'deit-b').
_base_ = ['./upernet_deit_b_ade20k.py', '../_base_/compression/atme.py']

model = dict(
    backbone=dict(
        token_reducer=_base_.atme_deit_b))
