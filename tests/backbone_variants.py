"""Tiny CAITViT backbones, one per compression variant, shared by the
tests that compile and export every variant (tests/test_engine/
test_compile.py, tests/test_deploy/test_onnx_export.py)."""
import torch

from cait_mm.models import CAITViT

TINY = dict(embed_dims=32, num_layers=3, num_heads=2, mlp_ratio=2.)
MERGE = [(0, 'h', .5), (1, 'v', .5)]
VARIANTS = {
    'dense': {},
    'atme-token': dict(token_reducer=dict(type='ATME', schedule=MERGE)),
    'atme-line': dict(token_reducer=dict(type='ATME', schedule=MERGE,
                                         granularity='line')),
    # the bias folded into the heads, as on CUDA (for FlashAttention)
    'atme-fold': dict(token_reducer=dict(type='ATME', schedule=MERGE),
                      attn_bias_mode='fold'),
    # a ratio of 1: the whole-line path (shape-only tables, no sort)
    'atme-whole-line': dict(token_reducer=dict(
        type='ATME', schedule=[(0, 'h', 1.), (1, 'v', 1.)])),
    'atme-adaptive': dict(token_reducer=dict(type='ATMEAdaptive',
                                             schedule=MERGE)),
    'tps': dict(token_reducer=dict(type='TPS', blocks=(0, 1),
                                   keep_ratio=.6)),
    'tome': dict(token_reducer=dict(type='ToMe', r=4)),
    'evit': dict(token_reducer=dict(type='EViT', blocks=(0, 1),
                                    keep_ratio=.6)),
    'cdcp-exported': dict(token_reducer=dict(type='ATME', schedule=MERGE),
                          channel_prune=dict(groups=('qk', 'v', 'mlp'))),
}


def backbone(name: str) -> CAITViT:
    """The ``name`` variant in eval mode, initialised from seed 0; CDCP's
    with half of every group pruned and compacted."""
    torch.manual_seed(0)
    model = CAITViT(arch=TINY, img_size=64, out_indices=(0, 2),
                    **VARIANTS[name])
    model.init_weights()
    if name == 'cdcp-exported':
        for entries in model.channel_groups().values():
            for _, group in entries:
                group.select(0.5)
        model.eval().compact()
    return model.eval()
