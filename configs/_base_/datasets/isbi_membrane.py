# ISBI 2012 EM membranes (2 classes; 24 training and 6 validation 512x512
# grey slices), as tools/dataset_converters/isbi_membrane.py writes them:
# ADE20K's folder layout, so mmseg's ADE20K loaders (data_prefix, samplers,
# workers, IoUMetric) serve with the dataset, pipelines and batch replaced.
_base_ = ['mmseg::_base_/datasets/ade20k.py']

dataset_type = 'cait_mm.ISBIMembraneDataset'
data_root = 'data/isbi_membrane'
# The slices' native size; EM has one scale, so only mild rescaling. Top-down
# images have no up or down, hence both flips.
native_scale = (512, 512)
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=native_scale,
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
# Whole images at their native size.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type=dataset_type, data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type, data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
