# CPU recipe on the Dubai aerial tiles with ATME token merging (preset
# 'deit-t'): upernet_deit_t_dubai_cpu.py, nothing else changed.
_base_ = ['./upernet_deit_t_dubai_cpu.py', '../_base_/compression/atme.py']

model = dict(backbone=dict(token_reducer=_base_.atme_deit_t))
