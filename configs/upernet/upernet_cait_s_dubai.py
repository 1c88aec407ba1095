# CAIT-S UperNet on the Dubai aerial tiles:
# upernet_deit_s_dubai.py with ATME token merging (preset 'deit-s'),
# nothing else changed.
_base_ = ['./upernet_deit_s_dubai.py']

model = dict(backbone=dict(token_reducer=dict(type='ATME', schedule='deit-s')))
