"""Export a (compressed) model to ONNX for a fixed input size, and check it
against PyTorch with ONNX Runtime.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT OUT.onnx
        --shape H W [--part backbone|features|network] [--batch-size 1]
        [--cfg-options k=v ...] [--tolerance 1e-4]

``--part network`` (the default) is a segmentor's tensor forward: backbone,
neck and decode head, giving the logits before they are resized to the
image; ``backbone`` the backbone alone (its restored feature maps);
``features`` backbone and neck (what detectors export). Token reducers
(ATME, TPS, ToMe, EViT) and channel pruning are exported with the model;
the sizes they reduce to are fixed by the input size. An exported
compressed checkpoint (``tools/deployment/export_compressed.py``) is read
with its training config, as by tools/test.py. The ONNX Runtime outputs
must equal PyTorch's within ``--tolerance`` (max abs), else the tool fails.
OUT is written under a temporary name and renamed only once that check
passes: a failed check, an error or a kill leaves no new file under OUT,
and an earlier OUT as it was.
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import DictAction

from cait_mm.analysis.model_from_config import build_model
from cait_mm.deploy import PartForward, check_onnx, export_onnx, onnx_session
from cait_mm.utils.atomic_write import atomic_output


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, required=True,
                        metavar=('H', 'W'))
    parser.add_argument('--part', choices=PartForward.PARTS,
                        default='network')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--tolerance', type=float, default=1e-4)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def main():
    args = parse_args()
    model = build_model(args.config, args.cfg_options, 'cpu',
                        args.checkpoint)
    part = PartForward(model, args.part).eval()
    torch.manual_seed(0)
    inputs = torch.randn(args.batch_size, 3, *args.shape)
    if osp.dirname(args.out):
        os.makedirs(osp.dirname(args.out), exist_ok=True)
    with atomic_output(args.out) as tmp_path:
        export_onnx(part, inputs, tmp_path)
        difference = check_onnx(part, onnx_session(tmp_path), inputs)
        if not difference <= args.tolerance:
            raise SystemExit(
                f'ONNX Runtime differs from PyTorch by {difference:.2e} > '
                f'--tolerance {args.tolerance}; {args.out} not written')
    print(f'wrote {args.out} ({args.part}, input {args.batch_size}x3x'
          f'{args.shape[0]}x{args.shape[1]}); ONNX Runtime vs PyTorch: max '
          f'abs difference {difference:.2e}')


if __name__ == '__main__':
    main()
