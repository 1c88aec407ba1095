# Dense DeiT-T UperNet on ADE20K: the DeiT-S baseline's recipe at DeiT-T size
# (mmseg has no DeiT-T UperNet; the heads take 192-channel maps).
_base_ = ['./upernet_deit_s_ade20k.py']

model = _base_.upernet_deit_t
