# The demo: the dense baseline's recipe (UperNet on CAITViT) at DeiT-T size,
# trained from scratch on the generated shapes dataset, sized for a CPU
# (about 10 minutes on 2 cores): the CPU-sized UperNet DeiT-T, the shapes
# data at 256x256 and the CPU from-scratch schedule, with no dropout or drop
# path. Generate the data first:
#   python tools/misc/make_demo_data.py --out data/demo_shapes
_base_ = [
    '../_base_/models/upernet_caitvit_deit_t_cpu.py',
    '../_base_/datasets/demo_shapes.py', 'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/schedule_600_adamw_scratch.py'
]
crop_size = (256, 256)
num_classes = 6
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(drop_path_rate=0.0),
    decode_head=dict(num_classes=num_classes, dropout_ratio=0.0),
    auxiliary_head=dict(num_classes=num_classes, dropout_ratio=0.0))
