# UperNet DeiT-S on the Dubai aerial tiles (6 classes; tiles 1-6 train, 7-8
# validate, cut into 512x512 crops by the converter): the ADE20K baseline
# with only the data (../_base_/datasets/dubai_aerial.py) and the schedule
# (../_base_/schedules/schedule_2k_adamw.py) changed. This is the full-size
# (GPU) recipe: 512x512 crops, batch 8, 2k iterations, fine-tuned from the
# DeiT-S ImageNet weights (`model.pretrained`, the model base's). The
# CPU-sized recipe is upernet_deit_t_dubai_cpu.py.
#
# Prepare the data (nothing is downloaded):
#   python tools/dataset_converters/dubai_aerial.py --src SRC \
#       --out data/dubai_aerial
# Without the DeiT file, train from scratch, with the from-scratch learning
# rate of the CPU recipe:
#   python tools/train.py configs/upernet/upernet_deit_s_dubai.py \
#       --cfg-options model.pretrained=None optim_wrapper.optimizer.lr=1e-3 \
#       optim_wrapper.optimizer.weight_decay=0.05
_base_ = [
    '../_base_/models/upernet_caitvit_deit_s.py',
    '../_base_/datasets/dubai_aerial.py', 'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/schedule_2k_adamw.py'
]
num_classes = 6
model = dict(
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))
