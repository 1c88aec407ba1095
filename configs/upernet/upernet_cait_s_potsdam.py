# CAIT-S UperNet on ISPRS Potsdam (aerial), mmseg's PotsdamDataset and
# pipeline (512x512 crops, as the model base's inputs; 6 classes). Prepare
# the data with mmseg's tools/dataset_converters/potsdam.py.
_base_ = [
    '../_base_/models/upernet_caitvit_deit_s.py',
    'mmseg::_base_/datasets/potsdam.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/schedule_80k_adamw.py',
    '../_base_/compression/atme.py',
]
model = dict(
    backbone=dict(
        token_reducer=_base_.atme_deit_s),
    decode_head=dict(num_classes=6),
    auxiliary_head=dict(num_classes=6))
train_dataloader = dict(batch_size=2)
