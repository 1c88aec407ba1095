# Dense baseline: mmseg's DeiT-S UperNet on ADE20K
# (vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py, 42.96 mIoU in mmseg's
# model zoo) with CAITViT in plain DeiT form as the backbone. Same structure
# as mmseg's config: model base, dataset, runtime, schedule (a test checks
# that head, data, optimizer and schedule equal mmseg's); the 512x512 crop
# size is the model base's and the dataset's.
# `model.pretrained` is the official DeiT-S file
# deit_small_patch16_224-cd65a155.pth, which CAITViT reads as it is (mmseg's
# ViT needs it converted by vit2mmseg.py first).
_base_ = [
    '../_base_/models/upernet_caitvit_deit_s.py',
    'mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/schedule_80k_adamw.py'
]
model = dict(
    decode_head=dict(num_classes=150), auxiliary_head=dict(num_classes=150))

# By default, models are trained on 8 GPUs with 2 images per GPU
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
