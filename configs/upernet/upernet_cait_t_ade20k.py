# CAIT-T UperNet: the dense DeiT-T UperNet with ATME (preset 'deit-t').
_base_ = ['./upernet_deit_t_ade20k.py']

model = dict(
    backbone=dict(
        token_reducer=dict(
            type='ATME', schedule='deit-t', granularity='token')))
