# CPU recipe on the Dubai aerial tiles with ATME token merging (preset
# 'deit-t'): upernet_deit_t_dubai_cpu.py, nothing else changed.
_base_ = ['./upernet_deit_t_dubai_cpu.py']

model = dict(backbone=dict(token_reducer=dict(type='ATME', schedule='deit-t')))
