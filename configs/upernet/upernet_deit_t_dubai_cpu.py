# The CPU-sized recipe for the Dubai aerial tiles: upernet_deit_t_dubai.py
# trained from scratch on 256x256 crops (same scale range) with a narrower
# UperNet head (../_base_/models/upernet_caitvit_deit_t_cpu.py), batch 8,
# 600 iterations (../_base_/schedules/schedule_600_adamw_scratch.py),
# evaluated on the 315 whole 512x512 validation crops. Minutes on 2 cores.
#
# From scratch because no weights can be downloaded here, so the learning
# rate is the demo's from-scratch one, not the fine-tuning one. With the
# DeiT-T file in pretrain/, fine-tune instead:
#   python tools/train.py configs/upernet/upernet_deit_t_dubai_cpu.py \
#       --cfg-options \
#       model.pretrained=pretrain/deit_tiny_patch16_224-a1311bcf.pth \
#       optim_wrapper.optimizer.lr=6e-5 \
#       optim_wrapper.optimizer.weight_decay=0.01
_base_ = [
    '../_base_/models/upernet_caitvit_deit_t_cpu.py',
    '../_base_/datasets/dubai_aerial.py', 'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/schedule_600_adamw_scratch.py'
]
crop_size = (256, 256)
num_classes = 6
model = dict(
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))
# the dataset's training pipeline with 256x256 crops; 2 workers for 2 cores
train_pipeline = [
    dict(t, crop_size=crop_size) if t['type'] == 'RandomCrop' else t
    for t in _base_.train_pipeline
]
train_dataloader = dict(num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=2)
test_dataloader = val_dataloader
