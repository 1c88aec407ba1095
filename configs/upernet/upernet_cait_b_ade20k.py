# CAIT-B UperNet: the dense DeiT-B UperNet with ATME (preset 'deit-b').
_base_ = ['./upernet_deit_b_ade20k.py']

model = dict(
    backbone=dict(
        token_reducer=dict(
            type='ATME', schedule='deit-b', granularity='token')))
