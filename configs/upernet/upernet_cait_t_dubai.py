# CAIT-T UperNet on the Dubai aerial tiles:
# upernet_deit_t_dubai.py with ATME token merging (preset 'deit-t'),
# nothing else changed.
_base_ = ['./upernet_deit_t_dubai.py']

model = dict(backbone=dict(token_reducer=dict(type='ATME', schedule='deit-t')))
