import torch

from cait_mm.analysis import count_flops
from cait_mm.core import Attention
from cait_mm.core.atme_schedules import schedule_flops
from cait_mm.models import CAITViT

TINY = dict(embed_dims=64, num_layers=4, num_heads=2, mlp_ratio=4.)


def test_attention_counts_projections_and_attention_itself():
    attn = Attention(64, 4, qk_dim=8, v_dim=12)
    B, N = 2, 10
    total, ops = count_flops(attn, (torch.randn(B, N, 64), ))
    qkv = B * N * 64 * 4 * (8 + 8 + 12)
    proj = B * N * 4 * 12 * 64
    sdpa = B * 4 * N * N * (8 + 12)
    assert ops['linear'] == qkv + proj
    assert ops['scaled_dot_product_attention'] == sdpa


def test_merging_ops_are_counted_not_free():
    dense = CAITViT(arch=TINY, img_size=64, out_indices=(3, ))
    merged = CAITViT(arch=TINY, img_size=64, out_indices=(3, ),
                     token_reducer=dict(
                         type='ATME', schedule=[(0, 'h', .5), (1, 'v', 1.)]))
    x = torch.randn(1, 3, 128, 128)
    dense_total, dense_ops = count_flops(dense, (x, ))
    merged_total, merged_ops = count_flops(merged, (x, ))
    for op in ('gather', 'argsort', 'linalg_vector_norm', 'cumsum'):
        assert merged_ops[op] > 0, op
        assert op not in dense_ops
    assert merged_total < dense_total
    # the blocks' share follows the analytic schedule count; the patch
    # embedding and the merge machinery come on top
    blocks = sum(v for k, v in merged_ops.items()
                 if k in ('linear', 'scaled_dot_product_attention'))
    dense_blocks = sum(v for k, v in dense_ops.items()
                       if k in ('linear', 'scaled_dot_product_attention'))
    analytic = schedule_flops([(0, 'h', .5), (1, 'v', 1.)], (8, 8), 64, 4)
    assert abs(blocks / dense_blocks - analytic) < 1e-6
