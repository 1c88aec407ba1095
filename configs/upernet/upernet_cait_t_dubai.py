# CAIT-T UperNet on the Dubai aerial tiles:
# upernet_deit_t_dubai.py with ATME token merging (preset 'deit-t'),
# nothing else changed.
_base_ = ['./upernet_deit_t_dubai.py', '../_base_/compression/atme.py']

model = dict(backbone=dict(token_reducer=_base_.atme_deit_t))
