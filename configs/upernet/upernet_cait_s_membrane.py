# CAIT-S UperNet on the ISBI 2012 membranes:
# upernet_deit_s_membrane.py with ATME token merging (preset 'deit-s'),
# nothing else changed.
_base_ = ['./upernet_deit_s_membrane.py']

model = dict(backbone=dict(token_reducer=dict(type='ATME', schedule='deit-s')))
