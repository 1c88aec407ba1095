# CAIT-S UperNet: the dense baseline with ATME token merging in the backbone
# (preset schedule 'deit-s': blocks 0-2 unmerged, then HTM/VTM alternating on
# blocks 3-8). Merged tokens are restored to the full 1/16 grid at every
# out_indices block, so the head is the baseline's.
_base_ = ['./upernet_deit_s_ade20k.py', '../_base_/compression/atme.py']

model = dict(
    backbone=dict(
        token_reducer=_base_.atme_deit_s))
