# CDCP channel pruning (docs/guides/cdcp.md), the settings every CDCP config
# shares.
# A config adds `cdcp_channel_prune` to its backbone, merges
# `cdcp_optim_wrapper` into its optimizer wrapper and runs a CDCPHook built
# from `cdcp_hook` with its own schedule (`cdcp_hook_cpu` for the 600-
# iteration CPU recipes).

# Identity-initialised compactors for the QK, V and MLP channel groups of
# every block.
cdcp_channel_prune = dict(groups=('qk', 'v', 'mlp'))

# No weight decay on the compactors: the group lasso of CDCPHook is meant to
# be the only pull on them. Their row norms rank the channels, and pruned
# rows get no task gradient, so decay would shrink every channel, kept ones
# included, and move pruned ones on a schedule nobody chose.
cdcp_optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'compactor': dict(decay_mult=0.)}))

# Half of each group pruned by the end of the ramp; channels are re-ranked
# every `interval` iterations, so those that become important again are
# released, and the lasso takes a selected channel's compactor rows to zero
# in about 1 / lasso iterations.
cdcp_hook = dict(type='cait_mm.CDCPHook', ratios=dict(qk=0.5, v=0.5, mlp=0.5))
# The CPU recipes (600 iterations): the ramp from iteration 100 to 400,
# re-ranked every 50, and a lasso that zeroes a selected channel's rows in
# about 200 iterations, so that the export at the end removes channels that
# no longer contribute.
cdcp_hook_cpu = dict(cdcp_hook, interval=50, begin=100, end=400, lasso=5e-3)

# CDCP on the UperNet head as well (cait_mm.CAITUPerHead, docs/guides/cdcp.md):
# compactors after the PPM convs, the lateral convs with the PPM bottleneck
# (summed, one mask), the FPN convs and fpn_bottleneck. A config adds
# `cdcp_head_prune` to its decode head and gives its hook
# `cdcp_whole_ratios` (half of each backbone and head group by the end of
# the ramp).
cdcp_head_prune = dict(groups=('ppm', 'lateral', 'fpn', 'fuse'))
cdcp_whole_ratios = dict(
    cdcp_hook['ratios'], ppm=0.5, lateral=0.5, fpn=0.5, fuse=0.5)

# CDCP on Mask R-CNN's neck and heads (cait_mm.SimpleFeaturePyramid,
# CAITRPNHead, CAITShared2FCBBoxHead, CAITFCNMaskHead): compactors on each
# pyramid level's inner channels (before the 1x1 conv's layer norm, which
# then normalises over the kept channels only), after the RPN conv, the two
# shared FCs of the box head and the mask convs. A config merges
# `cdcp_det_heads` into its model and gives its hook `cdcp_det_ratios`.
cdcp_det_heads = dict(
    neck=dict(channel_prune=dict(groups=('neck', ))),
    rpn_head=dict(channel_prune=dict(groups=('rpn', ))),
    roi_head=dict(
        bbox_head=dict(channel_prune=dict(groups=('fc', ))),
        mask_head=dict(channel_prune=dict(groups=('mask', )))))
cdcp_det_ratios = dict(cdcp_hook['ratios'], neck=0.5, rpn=0.5, fc=0.5,
                       mask=0.5)
