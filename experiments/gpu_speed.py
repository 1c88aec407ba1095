# The GPU speed check (docs/results/benchmarks.md): what users run first,
# fp16 autocast, every row a ratio to the first row of its table.
#   - the whole UperNet DeiT-S 512 batch 8: dense, ATME (preset and
#     few-merge, each also with the Triton merge in eager mode, few-merge
#     with the attention bias as a mask, not folded, and whole-line merges
#     at 2 points), ToMe and EViT at ATME's block FLOPs,
#     slim-half (ATME + half of the backbone and head channels, with either
#     schedule) and CDCP alone, eager and compiled;
#   - tools/test.py --compile --amp on the real evaluation path (mmseg's
#     whole-image inference of 512x512 images read from files, pre- and
#     post-processing and the IoU metric included);
#   - DeiT-B 512 batch 8, backbone and whole model; DeiT-S 224 backbones
#     at batch 64 and 256, eager with each reducer's bound, and compiled;
#   - one profile per row (top kernels, busy time, kernels launched), and
#     the CUDA tests.
#
#   python experiments/runner.py experiments/gpu_speed.py \
#       --out-dir work_dirs/gpu_speed [--quick]
#
# On a machine with torch but no network (the lent GPU machines), with the
# rest of the requirements carried as wheels: experiments/README.md, "On a
# machine with torch but no network".
#
# The steps run in `plan` order (what users need most first); a table
# already in the out dir is not measured again, so a run cut short goes on
# where it stopped. `quick` is the shorter plan. `smoke` runs the plan tiny
# on the CPU with the 'eager' compile backend (it checks the plan, not the
# speed).
title = 'GPU speed check'
device = 'cuda'
options = ['--amp', '--profile']

_d = 'configs/upernet/upernet_deit_s_ade20k.py'
_db = 'configs/upernet/upernet_deit_b_ade20k.py'
_slim = 'configs/upernet/upernet_cait_s_slim-half_ade20k.py'
_r = '@model.backbone.token_reducer'
_w, _h = '@model.backbone.channel_widths', '@model.decode_head.channel_widths'
_m = '@model.backbone.attn_bias_mode=mask'
entries = {
    'deit-s': _d,
    'atme': f'{_d}{_r}.type=ATME{_r}.schedule=deit-s',
    'atme-few': f'{_d}{_r}.type=ATME{_r}.schedule=deit-s-few',
    # at 224 the few-merge preset's ratios round to more FLOPs (0.53); these
    # whole-line merges have the preset's (match_flops --max-points 2: 0.475
    # vs 0.482)
    'atme-few-224': f'{_d}{_r}.type=ATME{_r}.schedule=[[3,h,1.0],[4,v,1.0]]',
    # whole-line merges (a ratio of 1: a 2x mean along each axis, 2-5
    # kernels a point, no choice to compute) at blocks 4 and 5: 0.52 of the
    # block FLOPs at 512, the nearest such pair of points to the preset's
    'atme-pool': f'{_d}{_r}.type=ATME{_r}.schedule=[[4,h,1.0],[5,v,1.0]]',
    # the bias of proportional attention as SDPA's mask (a kernel that
    # takes one: no FlashAttention), not folded into the heads ('auto' on
    # CUDA: 3 cats and a copy in each biased block, 8 of them with
    # deit-s-few): which is faster decides what 'auto' picks
    'atme-few-mask': f'{_d}{_r}.type=ATME{_r}.schedule=deit-s-few{_m}',
    'atme-few-224-mask':
    f'{_d}{_r}.type=ATME{_r}.schedule=[[3,h,1.0],[4,v,1.0]]{_m}',
    'atme-triton': f'{_d}{_r}.type=ATME{_r}.schedule=deit-s{_r}.kernel=triton',
    'atme-few-triton':
    f'{_d}{_r}.type=ATME{_r}.schedule=deit-s-few{_r}.kernel=triton',
    'slim-half': _slim,
    'slim-half-few': f'{_slim}{_r}.schedule=deit-s-few',
    'cdcp-half': _d + ''.join(
        f'{_w}.{g}=0.5' for g in ('qk', 'v', 'mlp')) + ''.join(
        f'{_h}.{g}=0.5' for g in ('ppm', 'lateral', 'fpn', 'fuse')),
    'deit-b': _db,
    'atme-b': f'{_db}{_r}.type=ATME{_r}.schedule=deit-b',
    'atme-few-b': f'{_db}{_r}.type=ATME{_r}.schedule=deit-b-few',
}
# the Triton merge runs on CUDA tensors only: left out elsewhere
cuda_only = ('atme-triton', 'atme-few-triton')

# block FLOPs of the ATME preset: the ToMe and EViT rows are set to it
_peers_512 = ['--flops-target', '0.495', '--reducers', 'ToMe', 'EViT']
_peers_224 = ['--flops-target', '0.482', '--reducers', 'ToMe', 'EViT']
_upernet = ['--part', 'model', '--shape', '512', '512', '--batch-size', '8',
            '--warmup', '3', '--repeats', '10']
_b512 = ['--shape', '512', '512', '--batch-size', '8', '--warmup', '3',
         '--repeats', '10']
_s224 = ['--part', 'backbone', '--shape', '224', '224', '--warmup', '5',
         '--repeats', '20']
_upernet_rows = ['deit-s', 'atme', 'atme-few', 'atme-pool', 'slim-half',
                 'slim-half-few', 'cdcp-half']

# name: entries (the first is the reference) and the benchmark's options;
# a name starting with c_ is measured compiled
tables = {
    'e_upernet_s_512_b8': dict(
        entries=['deit-s', 'atme', 'atme-few', 'atme-pool', 'atme-triton',
                 'atme-few-triton', 'atme-few-mask', 'slim-half',
                 'slim-half-few', 'cdcp-half'],
        options=_upernet + _peers_512),
    'c_upernet_s_512_b8': dict(entries=_upernet_rows,
                               options=_upernet + _peers_512),
    'c_upernet_s_512_b8_quick': dict(entries=_upernet_rows[:6],
                                     options=_upernet),
    **{f'{mode}_deit_b_512_b8_{part}': dict(
        entries=['deit-b', 'atme-b', 'atme-few-b'],
        options=['--part', part] + _b512)
       for mode in 'ec' for part in ('backbone', 'model')},
    'e_deit_s_224_b64': dict(
        entries=['deit-s', 'atme', 'atme-few-224', 'atme-few-224-mask',
                 'atme-triton'],
        options=['--bound', '--batch-size', '64'] + _s224 + _peers_224),
    'c_deit_s_224_b64': dict(entries=['deit-s', 'atme', 'atme-few-224'],
                             options=['--batch-size', '64'] + _s224),
    'e_deit_s_224_b256': dict(
        entries=['deit-s', 'atme', 'atme-few-224', 'atme-triton'],
        options=['--bound', '--batch-size', '256'] + _s224),
    'c_deit_s_224_b256': dict(entries=['deit-s', 'atme', 'atme-few-224'],
                              options=['--batch-size', '256'] + _s224),
}
# tools/test.py --compile --amp on generated ADE20K-layout images (random
# weights: the speed, not the scores)
test_py = dict(entries=['deit-s', 'atme-few', 'slim-half'], images=100,
               warmup=10)
cuda_tests = ['tests/test_core/test_atme_triton.py',
              'tests/test_models/test_backbones/test_cait_vit_cuda.py']
plan = ['e_upernet_s_512_b8', 'e_deit_b_512_b8_backbone', 'e_deit_s_224_b64',
        'c_upernet_s_512_b8', 'test_py', 'c_deit_b_512_b8_backbone',
        'c_deit_s_224_b64', 'e_deit_s_224_b256', 'e_deit_b_512_b8_model',
        'c_deit_s_224_b256', 'c_deit_b_512_b8_model']
quick = ['e_upernet_s_512_b8', 'e_deit_b_512_b8_backbone', 'e_deit_s_224_b64',
         'c_upernet_s_512_b8_quick', 'test_py', 'c_deit_b_512_b8_backbone',
         'c_deit_s_224_b64']
# issue #27's targets: a row's ratio to the first row of its table (the
# first of `tables` that was measured), or 'ROW / OTHER' the ratio of two
# rows; summary.md says of each whether it was met
_c_upernet = ['c_upernet_s_512_b8', 'c_upernet_s_512_b8_quick']
targets = [
    dict(what='UperNet DeiT-S 512 b8, whole model, eager',
         tables=['e_upernet_s_512_b8'], rows=['slim-half'], at_least=1.6),
    dict(what='UperNet DeiT-S 512 b8, whole model, compiled',
         tables=_c_upernet, rows=['slim-half'], at_least=1.6),
    dict(what='UperNet DeiT-S 512 b8, whole model, eager, ATME alone',
         tables=['e_upernet_s_512_b8'], rows=['atme', 'atme-few'],
         at_least=1.0),
    dict(what='UperNet DeiT-S 512 b8, whole model, compiled, ATME alone',
         tables=_c_upernet, rows=['atme', 'atme-few'], at_least=1.2),
    dict(what='DeiT-B 512 b8 backbone, eager',
         tables=['e_deit_b_512_b8_backbone'], rows=['atme-b', 'atme-few-b'],
         at_least=1.6),
    dict(what='DeiT-B 512 b8 backbone, compiled',
         tables=['c_deit_b_512_b8_backbone'], rows=['atme-b', 'atme-few-b'],
         at_least=1.8),
    dict(what='DeiT-S 224 b256 backbone, eager', tables=['e_deit_s_224_b256'],
         rows=['atme', 'atme-few-224'], at_least=1.5),
    dict(what='DeiT-S 224 b64 backbone, compiled', tables=['c_deit_s_224_b64'],
         rows=['atme', 'atme-few-224'], at_least=1.4),
    dict(what='DeiT-S 224 b64 backbone, eager, within 10% of its bound',
         tables=['e_deit_s_224_b64'],
         rows=['atme / atme bound', 'atme-few-224 / atme-few-224 bound'],
         at_least=0.9),
    dict(what='tools/test.py --compile --amp, 512x512 whole images',
         tables=['test_compile'], rows=['slim-half'], at_least=1.5),
]
# --smoke: these options replace the tables' sizes and counts
smoke = dict(device='cpu', images=4, warmup=1,
             options={'--shape': ['64', '64'], '--batch-size': ['1'],
                      '--warmup': ['1'], '--repeats': ['1']},
             compile_options=['--compile-backend', 'eager'])
