# CPU recipe on the ISBI 2012 membranes with TPS token pruning and squeezing
# (class-token attention scores; blocks 3, 6, 9 keep 0.7 each:
# ../_base_/compression/tps.py): upernet_deit_t_membrane_cpu.py, nothing else
# changed.
_base_ = ['./upernet_deit_t_membrane_cpu.py', '../_base_/compression/tps.py']

model = dict(backbone=dict(token_reducer=_base_.tps_attn))
