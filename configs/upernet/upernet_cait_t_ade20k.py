# CAIT-T UperNet: the dense DeiT-T UperNet with ATME (preset 'deit-t').
_base_ = ['./upernet_deit_t_ade20k.py', '../_base_/compression/atme.py']

model = dict(
    backbone=dict(
        token_reducer=_base_.atme_deit_t))
