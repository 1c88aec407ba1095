# Mask R-CNN on tiny COCO (50 train + 50 val images of COCO 2017, 80 classes,
# in COCO's own layout: link or copy the folder to data/tiny_coco) with the
# CPU-sized recipe of the detection demo: DeiT-T trained from scratch (no
# weights can be downloaded here), narrow neck and heads, images resized to
# fit 384x384. Only mmdet's COCO dataset, pipeline and CocoMetric are used;
# the classes are COCO's 80 (the dataset's default metainfo).
#   python tools/train.py configs/mask-rcnn/mask-rcnn_deit_t_tiny_coco_cpu.py
#   python tools/test.py configs/mask-rcnn/mask-rcnn_deit_t_tiny_coco_cpu.py \
#       CKPT
_base_ = ['../demo/mask-rcnn_deit_t_demo_shapes.py']

img_scale = (384, 384)
num_classes = 80
model = dict(
    backbone=dict(img_size=img_scale),
    roi_head=dict(
        bbox_head=dict(num_classes=num_classes),
        mask_head=dict(num_classes=num_classes)))

data_root = 'data/tiny_coco/'
# the demo's pipelines at this size
train_pipeline = [
    dict(t, scale=img_scale) if 'scale' in t else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=img_scale) if 'scale' in t else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=4,
    dataset=dict(
        data_root=data_root,
        metainfo=None,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=train_pipeline))
# the same images' validation split
val_dataloader = dict(
    dataset=dict(
        train_dataloader['dataset'],
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# 50 images in batches of 4: 13 iterations an epoch; the demo's 12 epochs
# (steps at 8 and 11) and from-scratch lr, with a warm-up that fits.
param_scheduler = [
    dict(_base_.param_scheduler[0], end=50), _base_.param_scheduler[1]
]
default_hooks = dict(checkpoint=dict(interval=12, max_keep_ckpts=1))
