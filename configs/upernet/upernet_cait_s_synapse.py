# CAIT-S UperNet on Synapse multi-organ CT (medical), mmseg's SynapseDataset
# and pipeline (224x224 slices, mDice). Prepare the data with mmseg's
# tools/dataset_converters/synapse.py. 224x224 inputs give 14x14 token grids;
# the ATME schedule is by ratio, so the preset applies unchanged.
_base_ = [
    '../_base_/models/upernet_caitvit_deit_s.py',
    'mmseg::_base_/datasets/synapse.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/schedule_80k_adamw.py',
    '../_base_/compression/atme.py',
]
crop_size = (224, 224)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        img_size=crop_size,
        token_reducer=_base_.atme_deit_s),
    decode_head=dict(num_classes=9),
    auxiliary_head=dict(num_classes=9))
