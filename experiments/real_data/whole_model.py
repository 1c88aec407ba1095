# The whole model compressed on real data (docs/results/real_data.md): ATME
# plus CDCP on the backbone, then on the UperNet head too, trained from
# scratch with the CPU recipe (DeiT-T, 256x256 crops, 600 iterations) or
# fine-tuned from the dense row's checkpoint (CAIT's order of work); every
# CDCP row is exported and tested as the smaller model it becomes.
#
#   python experiments/runner.py experiments/real_data/whole_model.py \
#       --dataset dubai --data-root data/dubai_aerial --seeds 0 1 2
title = '{dataset}, whole model compressed (CPU recipe)'
config = 'configs/upernet/upernet_{model}_{dataset}_cpu.py'
datasets = ('membrane', 'dubai')
arch, preset, flops_shape = 'deit-t', 'deit-t', (512, 512)
metric = 'mIoU'

# the recipe's schedule (600 iterations) twice as long
long_schedule = {'train_cfg.max_iters': 1200, 'train_cfg.val_interval': 1200,
                 'param_scheduler.1.end': 1200}
head_groups = ('ppm', 'lateral', 'fpn', 'fuse')

rows = [
    dict(name='dense', model='deit_t', description='DeiT-T, no compression'),
    dict(name='cait-atme-cdcp', model='cait_t_cdcp', export=True,
         description='ATME + CDCP (half of QK/V/MLP), exported'),
    dict(name='cait-atme-cdcp-whole', model='cait_t_cdcp-whole', export=True,
         description='ATME + CDCP on the backbone and the UperNet head '
         '(half of every group), exported'),
    dict(name='cait-atme-cdcp-whole-25', model='cait_t_cdcp-whole',
         export=True, description='the same with a quarter of every head '
         'group pruned, exported',
         options={f'custom_hooks.0.ratios.{g}': 0.25 for g in head_groups}),
    # CAIT's order of work: compress a trained model. The compactors start
    # as the identity and the recipe's schedule runs again with the ramp
    dict(name='cait-atme-cdcp-whole-ft', model='cait_t_cdcp-whole',
         init_from='dense', export=True,
         description='the dense checkpoint fine-tuned with ATME + CDCP on '
         'the backbone and the head (half of every group), exported'),
    # the recipe's 1e-3 is a from-scratch rate: restarting a trained model
    # at it loses what the dense row learned
    dict(name='cait-atme-cdcp-whole-ft-lr1e-4', model='cait_t_cdcp-whole',
         init_from='dense', export=True,
         description='the same fine-tuning at a tenth of the learning rate '
         '(1e-4)', options={'optim_wrapper.optimizer.lr': 1e-4}),
    # a trained model can be ranked from the start: 300 iterations after
    # the last selection are left to recover
    dict(name='cait-atme-cdcp-whole-ft-early', model='cait_t_cdcp-whole',
         init_from='dense', export=True,
         description='the same fine-tuning with the pruning ramp from '
         'iteration 0 to 300 (instead of 100 to 400)',
         options={'custom_hooks.0.begin': 0, 'custom_hooks.0.end': 300}),
    # twice as long, the ramp stretched to 0-600 (re-ranked every 100);
    # dense-ft-long is its control, the dense checkpoint trained as long
    dict(name='cait-atme-cdcp-whole-ft-long', model='cait_t_cdcp-whole',
         init_from='dense', export=True,
         description='the early-ramp fine-tuning twice as long (1200 '
         'iterations, ramp 0-600)',
         options={**long_schedule, 'custom_hooks.0.begin': 0,
                  'custom_hooks.0.end': 600,
                  'custom_hooks.0.interval': 100}),
    dict(name='dense-ft-long', model='deit_t', init_from='dense',
         description='control: the dense checkpoint trained 1200 more '
         'iterations', options=long_schedule),
]
