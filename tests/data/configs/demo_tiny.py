# The demo config shrunk for tests: a 4-block ViT on 64x64 crops, 4 iters.
_base_ = ['../../../configs/demo/upernet_deit_t_demo_shapes.py']

crop_size = (64, 64)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=64,
            num_layers=4,
            num_heads=2,
            mlp_ratio=2.),
        img_size=crop_size,
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[64, 64, 64, 64], channels=32),
    auxiliary_head=dict(in_channels=64, channels=16))
# the demo's pipelines at this size (resize scale and crop)
train_pipeline = [
    dict(t, **{k: crop_size for k in ('scale', 'crop_size') if k in t})
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=crop_size) if 'scale' in t else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=4, val_interval=4)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=2, max_keep_ckpts=3))
