# The Dubai aerial tiles (6 classes; tiles 1-6 train, 7-8 validate, cut into
# 512x512 crops by tools/dataset_converters/dubai_aerial.py, which writes
# ADE20K's folder layout too): the membranes' loaders and top-down pipelines
# (./isbi_membrane.py: both flips, whole images at test, batch 8) with the
# dataset replaced and ADE20K's wide scale range and cat_max_ratio, because
# the tiles differ in ground resolution.
_base_ = ['./isbi_membrane.py']

dataset_type = 'cait_mm.DubaiAerialDataset'
data_root = 'data/dubai_aerial'
train_pipeline = [
    dict(t, ratio_range=(0.5, 2.0)) if t['type'] == 'RandomResize' else
    dict(t, cat_max_ratio=0.75) if t['type'] == 'RandomCrop' else t
    for t in _base_.train_pipeline
]
train_dataloader = dict(
    dataset=dict(
        type=dataset_type, data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
