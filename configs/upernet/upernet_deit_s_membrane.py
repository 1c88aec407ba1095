# UperNet DeiT-S on the ISBI 2012 EM membranes (2 classes; 24 training and
# 6 validation 512x512 grey slices): the ADE20K baseline with only the data
# (../_base_/datasets/isbi_membrane.py) and the schedule
# (../_base_/schedules/schedule_2k_adamw.py) changed. This is the full-size
# (GPU) recipe: 512x512 crops, batch 8, 2k iterations, fine-tuned from the
# DeiT-S ImageNet weights (`model.pretrained`, the model base's). The
# CPU-sized recipe is upernet_deit_t_membrane_cpu.py.
#
# Prepare the data (nothing is downloaded):
#   python tools/dataset_converters/isbi_membrane.py --src SRC \
#       --out data/isbi_membrane
# Without the DeiT file, train from scratch, with the from-scratch learning
# rate of the CPU recipe:
#   python tools/train.py configs/upernet/upernet_deit_s_membrane.py \
#       --cfg-options model.pretrained=None optim_wrapper.optimizer.lr=1e-3 \
#       optim_wrapper.optimizer.weight_decay=0.05
_base_ = [
    '../_base_/models/upernet_caitvit_deit_s.py',
    '../_base_/datasets/isbi_membrane.py', 'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/schedule_2k_adamw.py'
]
num_classes = 2
model = dict(
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))
