# UperNet DeiT-T on the Dubai aerial tiles, full-size (GPU) recipe:
# upernet_deit_s_dubai.py with the DeiT-T backbone. From scratch and
# CPU-sized: upernet_deit_t_dubai_cpu.py.
_base_ = ['./upernet_deit_s_dubai.py']

model = _base_.upernet_deit_t
