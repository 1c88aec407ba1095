# Token reducers on real data (docs/results/real_data.md, docs/results/
# peers.md), with the CPU recipe: DeiT-T UperNet from scratch on 256x256
# crops, 600 iterations, the same seed, schedule, crops and initialisation
# for every row. Trained rows use the reducer while training; the
# training-free rows test the dense row's checkpoint with a reducer added.
# The peers are compared at equal block FLOPs: at the ATME preset's
# ('preset': 0.521 of the dense blocks at 512x512) and at 35%.
#
#   python experiments/runner.py experiments/real_data/reducers.py \
#       --dataset membrane --data-root data/isbi_membrane --seeds 0 1 2
title = '{dataset}, token reducers (CPU recipe)'
config = 'configs/upernet/upernet_{model}_{dataset}_cpu.py'
datasets = ('membrane', 'dubai')
arch, preset, flops_shape = 'deit-t', 'deit-t', (512, 512)
metric = 'mIoU'

# 30% of DeiT-T's block FLOPs at 512x512: full merges in blocks 2-5 leave
# a quarter of each side
atme_30 = [(2, 'h', 1.0), (3, 'v', 1.0), (4, 'h', 1.0), (5, 'v', 1.0)]

few_late = [(4, 'h', 1.0), (5, 'v', 1.0)]
few_mid = [(3, 'h', 0.875), (5, 'v', 0.875)]
# gentler 2-point schedules at the preset's block FLOPs (0.498, 0.521):
# earlier points let smaller ratios than deit-t-few's 3/4 reach the FLOPs,
# to see whether merging most pairs at once costs accuracy (seed-0 screen)
few_early = [(0, 'h', 0.5), (1, 'v', 0.5)]
few_gentle = [(2, 'h', 0.625), (3, 'v', 0.625)]

# fine-tuning a trained dense model (tools/compress.py's next step): a
# third of the recipe's iterations at a tenth of its from-scratch rate,
# which would undo what the dense row learned
finetune = {'train_cfg.max_iters': 200, 'train_cfg.val_interval': 200,
            'param_scheduler.1.end': 200, 'optim_wrapper.optimizer.lr': 1e-4}

rows = [
    dict(name='dense', model='deit_t', description='DeiT-T, no compression'),
    dict(name='cait-atme', model='cait_t',
         description='ATME (deit-t preset) trained'),
    dict(name='atme-training-free', model='deit_t', reuse='dense',
         description='dense checkpoint, ATME at test time only',
         test_reducer=dict(type='ATME', schedule='deit-t')),
    # the few-merge preset: the preset's block FLOPs in 2 merges
    dict(name='cait-atme-few', model='cait_t',
         description='ATME, few-merge preset deit-t-few (2 merges), trained',
         reducer=dict(type='ATME', schedule='deit-t-few')),
    dict(name='atme-few-training-free', model='deit_t', reuse='dense',
         description='dense checkpoint, ATME deit-t-few (2 merges) at test '
         'time only', test_reducer=dict(type='ATME', schedule='deit-t-few')),
    # two other 2-point schedules at the preset's block FLOPs or below
    # (issue #27): whole-line merges at blocks 4 and 5, which
    # `for_flops(0.52, max_points=2)` picks at 512x512 (0.508; a ratio of 1
    # merges every pair: a 2x2 mean of the grid), and 7/8 of the pairs at
    # blocks 3 and 5 (0.495), screened training-free
    dict(name='cait-atme-few-late', model='cait_t',
         description='ATME, whole-line merges at blocks 4 (h) and 5 (v), '
         'trained', reducer=dict(type='ATME', schedule=few_late)),
    dict(name='atme-few-late-training-free', model='deit_t', reuse='dense',
         description='dense checkpoint, ATME whole-line merges at blocks 4 '
         '(h) and 5 (v) at test time only',
         test_reducer=dict(type='ATME', schedule=few_late)),
    dict(name='atme-few-mid-training-free', model='deit_t', reuse='dense',
         description='dense checkpoint, ATME 7/8 of the pairs at blocks 3 '
         '(h) and 5 (v) at test time only',
         test_reducer=dict(type='ATME', schedule=few_mid)),
    dict(name='cait-atme-few-early', model='cait_t',
         description='ATME, half of the pairs at blocks 0 (h) and 1 (v), '
         'trained', reducer=dict(type='ATME', schedule=few_early)),
    dict(name='cait-atme-few-gentle', model='cait_t',
         description='ATME, 5/8 of the pairs at blocks 2 (h) and 3 (v), '
         'trained', reducer=dict(type='ATME', schedule=few_gentle)),
    dict(name='tps', model='tps_t',
         description='TPS (attn scores, 0.7 at 3/6/9) trained'),
    dict(name='tps-training-free', model='deit_t', reuse='dense',
         description='dense checkpoint, TPS at test time only',
         test_reducer=dict(type='TPS', blocks=(3, 6, 9), keep_ratio=0.7)),
    dict(name='cait-atme-30', model='cait_t',
         description='ATME at 30% of the block FLOPs, trained',
         reducer=dict(type='ATME', schedule=atme_30)),
    dict(name='atme-30-training-free', model='deit_t', reuse='dense',
         description='dense checkpoint, ATME at 30% of the block FLOPs at '
         'test time', test_reducer=dict(type='ATME', schedule=atme_30)),
    # ToMe by its size-independent ratio, TPS and EViT by keep ratio
    dict(name='tps-matched', model='tps_t',
         description="TPS at the preset's {preset:.0%} block FLOPs, trained",
         reducer=dict(type='TPS', flops='preset')),
    dict(name='tome', model='tome_t',
         description="ToMe at the preset's {preset:.0%} block FLOPs, "
         'trained'),
    dict(name='evit', model='evit_t',
         description="EViT at the preset's {preset:.0%} block FLOPs, "
         'trained'),
    dict(name='tps-matched-training-free', model='deit_t', reuse='dense',
         description='dense checkpoint, TPS at {preset:.0%} block FLOPs at '
         'test time', test_reducer=dict(type='TPS', flops='preset')),
    dict(name='tome-training-free', model='deit_t', reuse='dense',
         description='dense checkpoint, ToMe at {preset:.0%} block FLOPs at '
         'test time', test_reducer=dict(type='ToMe', flops='preset',
                                        knob='ratio')),
    # ATMEAdaptive: ATME's token counts, merges placed by content
    dict(name='atme-adaptive-training-free', model='deit_t', reuse='dense',
         description='dense checkpoint, ATMEAdaptive (deit-t counts) at '
         'test time', test_reducer=dict(type='ATMEAdaptive',
                                        schedule='deit-t')),
    # ATMEAdaptive at a steady rate: ToMe's token counts in every block
    dict(name='atme-adaptive-ratio-training-free', model='deit_t',
         reuse='dense', description='dense checkpoint, ATMEAdaptive at a '
         "steady rate (ToMe's counts) at {preset:.0%} block FLOPs at test "
         'time', test_reducer=dict(type='ATMEAdaptive', flops='preset',
                                   knob='ratio')),
    dict(name='cait-atme-adaptive', model='cait_t',
         description="ATMEAdaptive at ATME's counts (deit-t preset), trained",
         reducer=dict(type='ATMEAdaptive', schedule='deit-t')),
    # the cait_t configs' reducer sets ATME's schedule, which a steady rate
    # replaces (ATMEAdaptive takes one or the other)
    dict(name='cait-atme-adaptive-ratio', model='cait_t',
         description='ATMEAdaptive at a steady rate at {preset:.0%} block '
         'FLOPs, trained', reducer=dict(type='ATMEAdaptive', flops='preset',
                                        knob='ratio'),
         options={'model.backbone.token_reducer.schedule': None}),
    dict(name='atme-ft', model='cait_t', init_from='dense',
         description='dense checkpoint fine-tuned with ATME (deit-t): 200 '
         'iterations at lr 1e-4', options=finetune),
    dict(name='atme-adaptive-ft', model='cait_t', init_from='dense',
         description='dense checkpoint fine-tuned with ATMEAdaptive '
         '(deit-t counts): 200 iterations at lr 1e-4', options=finetune,
         reducer=dict(type='ATMEAdaptive', schedule='deit-t')),
    dict(name='evit-training-free', model='deit_t', reuse='dense',
         description='dense checkpoint, EViT at {preset:.0%} block FLOPs at '
         'test time', test_reducer=dict(type='EViT', flops='preset')),
] + [
    dict(name=f'{name}-35-training-free', model='deit_t',
         reuse='dense', description=f'dense checkpoint, {what} at 35% block '
         'FLOPs at test time',
         test_reducer=dict(type=kind, flops=0.35, **knob))
    for kind, name, what, knob in (
        ('ATME', 'atme', 'ATME', {}),
        ('ATMEAdaptive', 'atme-adaptive', 'ATMEAdaptive', {}),
        ('ATMEAdaptive', 'atme-adaptive-ratio', 'ATMEAdaptive (steady rate)',
         dict(knob='ratio')),
        ('TPS', 'tps', 'TPS', {}), ('ToMe', 'tome', 'ToMe',
                                    dict(knob='ratio')),
        ('EViT', 'evit', 'EViT', {}))
]
