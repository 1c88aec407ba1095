# CAIT-S UperNet on ISPRS Potsdam (aerial), mmseg's PotsdamDataset and
# pipeline (512x512 crops, 6 classes). Prepare the data with mmseg's
# tools/dataset_converters/potsdam.py.
_base_ = [
    './_base_/models/upernet_caitvit_deit_s.py',
    'mmseg::_base_/datasets/potsdam.py', 'mmseg::_base_/default_runtime.py',
    './_base_/schedules/schedule_80k_adamw.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(token_merge=dict(schedule='deit-s', granularity='token')),
    decode_head=dict(num_classes=6),
    auxiliary_head=dict(num_classes=6))
train_dataloader = dict(batch_size=2)
