# CAIT-T UperNet on the ISBI 2012 membranes:
# upernet_deit_t_membrane.py with ATME token merging (preset 'deit-t'),
# nothing else changed.
_base_ = ['./upernet_deit_t_membrane.py', '../_base_/compression/atme.py']

model = dict(backbone=dict(token_reducer=_base_.atme_deit_t))
