# UperNet DeiT-T on the ISBI 2012 EM membranes, full-size (GPU) recipe:
# upernet_deit_s_membrane.py with the DeiT-T backbone. From scratch and
# CPU-sized: upernet_deit_t_membrane_cpu.py.
_base_ = ['./upernet_deit_s_membrane.py']

model = _base_.upernet_deit_t
