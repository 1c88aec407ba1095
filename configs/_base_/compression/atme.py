# ATME token merging (docs/guides/atme.md) as the CAIT configs use it: the
# preset schedule of each ViT size (blocks 0-2 unmerged, then horizontal and
# vertical merges alternating), 0.52 (DeiT-T), 0.50 (DeiT-S) and 0.51
# (DeiT-B) of the dense block FLOPs at 512x512. Merged tokens are restored
# to the full 1/16 grid at every out_indices block, so the heads are the
# dense model's. Training-free: it also applies to a dense checkpoint at
# test time.
atme_deit_t = dict(type='ATME', schedule='deit-t')
atme_deit_s = dict(type='ATME', schedule='deit-s')
atme_deit_b = dict(type='ATME', schedule='deit-b')
# The few-merge presets: the same block FLOPs in two merges (a horizontal
# and a vertical one at blocks 3 and 4), fewer kernel launches on a GPU.
atme_deit_t_few = dict(type='ATME', schedule='deit-t-few')
atme_deit_s_few = dict(type='ATME', schedule='deit-s-few')
atme_deit_b_few = dict(type='ATME', schedule='deit-b-few')
