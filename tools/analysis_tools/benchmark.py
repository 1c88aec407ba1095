"""Speed, FLOPs and params of several models, measured side by side.

    python tools/analysis_tools/benchmark.py ENTRY [ENTRY ...]
        [--shape H W] [--batch-size N] [--device cpu|cuda]
        [--part model|network|features|backbone]
        [--warmup 3] [--repeats 10] [--amp] [--cuda-graph]
        [--compile [--compile-mode M] | --onnx] [--bound] [--out-dir DIR]
        [--name STEM]

An ENTRY is a config, optionally with overrides joined by '@', values as in
--cfg-options:

    R=model.backbone.token_reducer  # dotted keys create it in a dense config
    ATME="@$R.type=ATME@$R.schedule=deit-s"
    python tools/analysis_tools/benchmark.py \\
        configs/upernet/upernet_deit_s_ade20k.py \\
        configs/upernet/upernet_cait_s_ade20k.py \\
        "configs/upernet/upernet_deit_s_ade20k.py$ATME" --shape 512 512

At equal FLOPs, one dense config and a row per token reducer, each set for
a fraction of the dense block FLOPs (ATME's and ATMEAdaptive's schedule,
ToMe's r, TPS's and EViT's keep ratio), after any other entries given:

    python tools/analysis_tools/benchmark.py \
        configs/upernet/upernet_deit_s_ade20k.py \
        --flops-target 0.5 --reducers ATME ATMEAdaptive TPS ToMe EViT \
        --part backbone

With --compile every entry is run through torch.compile (compiled rows
compare with compiled rows; on CUDA mode 'reduce-overhead' by default);
with --onnx every entry's part is exported to ONNX and timed in ONNX
Runtime (CPU; parts backbone, features and network).
With --bound each entry with a token reducer is followed by its bound, the
same blocks at the reducer's token counts with reductions that cost nothing
(cait_mm.core.TokenCountBound): how much of a gap to the FLOPs ratio is
the reducer's bookkeeping and how much the machine's.
All entries run in one process on the same random input; ratios are to the
first entry. Results are printed and saved as Markdown and JSON.
"""
import argparse
import json
import os
import os.path as osp
import time

import torch

from cait_mm.analysis.benchmark import (PARTS, Entry, benchmark, bound_entries,
                                        matched_entries,
                                        runtime_cudnn_benchmark, to_json,
                                        to_markdown)
from cait_mm.engine.compile import compile_options
from cait_mm.utils.atomic_write import write_text


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('entries', nargs='+', help='CONFIG[@key=value...]')
    parser.add_argument('--labels', nargs='+', help='names for the entries')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512),
                        metavar=('H', 'W'))
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--part', choices=PARTS, default='model')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--amp', action='store_true',
                        help='autocast: fp16 on CUDA, bf16 on CPU')
    parser.add_argument('--cuda-graph', action='store_true',
                        help='time CUDA-graph replays (backbone/features)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile every entry (static shapes)')
    parser.add_argument('--compile-mode',
                        help="default: 'reduce-overhead' on CUDA")
    parser.add_argument('--compile-backend', default='inductor')
    parser.add_argument('--onnx', action='store_true',
                        help='time ONNX Runtime (CPU) instead of PyTorch')
    parser.add_argument('--threads', type=int, help='torch CPU threads')
    parser.add_argument(
        '--profile', action='store_true',
        help='after timing, profile one call of each row: top operators and '
        'kernels, and the device\'s busy time against the wall time')
    parser.add_argument(
        '--flops-target', type=float,
        help='add a row per --reducers, each set for this fraction of the '
        'block FLOPs of the first entry (a dense config) at --shape')
    parser.add_argument(
        '--reducers', nargs='+',
        default=['ATME', 'ATMEAdaptive', 'TPS', 'ToMe', 'EViT'],
        help='token reducers for --flops-target')
    parser.add_argument(
        '--bound', action='store_true',
        help='after each entry with a token reducer, a row with the blocks '
        'at its token counts and reductions that cost nothing: the most its '
        'schedule can give on this machine')
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--name', help='file stem of the saved table '
                        '(default: the date and time)')
    return parser.parse_args()


def device_name(device: str) -> str:
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(torch.device(device))
    import platform
    return platform.processor() or platform.machine()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    entries = [Entry.parse(spec) for spec in args.entries]
    if args.labels:
        if len(args.labels) != len(entries):
            raise ValueError(f'{len(args.labels)} labels for '
                             f'{len(entries)} entries')
        for entry, label in zip(entries, args.labels):
            entry.label = label
    if args.flops_target is not None:
        # the first entry is the dense model the reducers are matched on
        matched = matched_entries(args.entries[0], tuple(args.shape),
                                  args.flops_target, args.reducers)
        entries += matched[1:]
    if args.bound:
        entries = bound_entries(entries)
    part = args.part
    shape = tuple(args.shape)
    compiled = compile_options(args.device, args.compile_mode,
                               args.compile_backend) \
        if args.compile else None
    # as tools/test.py runs them: cuDNN autotuning as the configs' env_cfg
    cudnn = runtime_cudnn_benchmark(entries)
    results = benchmark(entries, shape, args.batch_size, part, args.device,
                        args.warmup, args.repeats, args.amp, args.cuda_graph,
                        compiled, args.onnx, profile=args.profile,
                        cudnn_benchmark=cudnn)
    mode = ('compiled' if args.compile else 'onnxruntime' if args.onnx else
            'cuda-graph' if args.cuda_graph else 'eager')
    setting = dict(
        shape=shape, batch_size=args.batch_size, part=part,
        device=args.device, device_name=device_name(args.device), mode=mode,
        amp=args.amp, cuda_graph=args.cuda_graph,
        compile=compiled, onnx=args.onnx, cudnn_benchmark=cudnn,
        warmup=args.warmup,
        repeats=args.repeats, threads=torch.get_num_threads(),
        torch=torch.__version__)
    title = (f'{part} | input {shape[0]}x{shape[1]} | batch '
             f'{args.batch_size} | {args.device}'
             f'{" amp" if args.amp else ""}'
             f'{" cuda-graph" if args.cuda_graph else ""}'
             f'{" cudnn-benchmark" if cudnn and "cuda" in args.device else ""}'
             f'{" compiled" if args.compile else ""}'
             f'{" onnxruntime" if args.onnx else ""} | '
             f'{torch.get_num_threads()} '
             f'threads | median of {args.repeats}')
    table = to_markdown(results, title)
    print(table)
    os.makedirs(args.out_dir, exist_ok=True)
    stem = osp.join(args.out_dir,
                    args.name or time.strftime('%Y%m%d_%H%M%S'))
    write_text(stem + '.md', table)
    write_text(stem + '.json', json.dumps(to_json(results, setting),
                                          indent=2))
    saved = [f'{stem}.md', f'{stem}.json']
    if args.profile:
        report = ''.join(
            f'## {r.name}: {"GPU kernels" if "cuda" in args.device else "ops"}'
            f' busy {r.busy_ms:.2f} ms of a {r.latency_ms:.2f} ms call '
            f'(median), {r.launches} '
            f'{"kernels launched" if "cuda" in args.device else "ops run"}'
            f'\n{r.profile}\n' for r in results)
        print(report)
        saved.append(f'{stem}_profile.txt')
        write_text(saved[-1], report)
    print('saved ' + ', '.join(saved))


if __name__ == '__main__':
    main()
