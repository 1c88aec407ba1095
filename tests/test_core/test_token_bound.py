"""TokenCountBound: the blocks at a reducer's token counts, with reductions
that cost nothing (tools/analysis_tools/benchmark.py --bound)."""
import os.path as osp

import pytest
import torch

from cait_mm.analysis import count_flops
from cait_mm.analysis.benchmark import Entry, benchmark, bound_entries
from cait_mm.analysis.op_count import count_ops
from cait_mm.core import TokenCountBound, TokenState
from cait_mm.models import CAITViT

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ARCH = dict(embed_dims=48, num_layers=12, num_heads=3, mlp_ratio=2.)
REDUCERS = [
    dict(type='ATME', schedule='deit-s'),
    dict(type='ATME', schedule='deit-s', granularity='line'),
    dict(type='TPS', blocks=[3, 6, 9], keep_ratio=0.7),
    dict(type='ToMe', r=13, blocks=[0, 1, 2]),
    dict(type='EViT', keep_ratio=0.7),
]


def _lengths(model, x):
    """Tokens entering each block's MLP (after its reduction), and the
    outputs."""
    seen = []
    hooks = [b.mlp.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].shape[1])) for b in model.blocks]
    with torch.no_grad():
        outs = model(x)
    for h in hooks:
        h.remove()
    return seen, outs


def _vit(reducer):
    torch.manual_seed(0)
    return CAITViT(arch=ARCH, out_indices=(2, 5, 8, 11),
                   token_reducer=reducer).eval()


@pytest.mark.parametrize('reducer', REDUCERS, ids=lambda r: r['type'])
def test_the_bound_runs_the_blocks_at_the_reducers_token_counts(reducer):
    x = torch.randn(2, 3, 224, 160)
    model, bound = _vit(reducer), _vit(dict(type='TokenCountBound',
                                            reducer=reducer))
    lengths, outs = _lengths(model, x)
    bound_lengths, bound_outs = _lengths(bound, x)
    assert bound_lengths == lengths
    assert lengths[-1] < lengths[0]
    assert lengths == [1 + n for n in
                       model.token_reducer.token_counts((14, 10))]
    assert [o.shape for o in bound_outs] == [o.shape for o in outs]
    # the FLOPs of the same blocks: all that differs is the reducer's own
    # bookkeeping, which the bound leaves out
    flops, _ = count_flops(model, (x[:1], ))
    bound_flops, _ = count_flops(bound, (x[:1], ))
    assert 0.97 * flops <= bound_flops <= flops


def test_a_bounded_reduction_keeps_the_first_tokens():
    bound = TokenCountBound(12, dict(type='ATME', schedule='deit-s'))
    assert bound.blocks == {3, 4, 5, 6, 7, 8}
    state = TokenState.from_grid((14, 14))
    x = torch.randn(2, 197, 8)
    out, new = bound(3, x, None, state, 1)
    assert out.shape == (2, 141, 8) and torch.equal(out, x[:, :141])
    assert out.is_contiguous()
    # no sizes: no attention bias for the blocks after it
    assert new.size is None and new.attn_bias(1) is None
    # every patch is held by a kept token, so the maps restore
    full = new.restore(out, 1)
    assert full.shape == (2, 196, 8)
    assert int(new.source.max()) == 139
    assert new.to_map(out, 1).shape == (2, 8, 14, 14)
    # a count the tokens already meet (another reducer went further)
    # leaves them and their state alone
    fewer = out[:, :91]
    same, same_state = bound(4, fewer, None, new, 1)
    assert same is fewer and same_state is new


@pytest.mark.op_budget
def test_a_bounded_reduction_is_one_copy_of_the_kept_tokens():
    bound = TokenCountBound(12, dict(type='ATME', schedule='deit-s'))
    state = TokenState.from_grid((14, 14))
    x = torch.randn(2, 197, 8)
    bound(3, x, None, state, 1)
    ops = count_ops(lambda: bound(3, x, None, state, 1))
    assert ops.kernels_by_name == {'aten::copy_': 1}
    # at batch 1 the first tokens are already a contiguous block
    bound(3, x[:1], None, state, 1)
    assert count_ops(lambda: bound(3, x[:1], None, state, 1)).kernels == 0


def test_the_bound_follows_the_reducer_not_how_it_is_run():
    bound = TokenCountBound(
        12, dict(type='ATME', schedule='deit-s', kernel='triton'))
    assert bound.config() == dict(type='TokenCountBound', reducer=dict(
        type='ATME', schedule='deit-s'))
    assert bound.reference.kernel == 'torch'
    for bad in ('ATME', dict(type='TokenCountBound', reducer={})):
        with pytest.raises(ValueError, match='another token reducer'):
            TokenCountBound(12, bad)
    padded = TokenState.from_grid((4, 4), valid_shape=[(4, 4), (2, 4)])
    with pytest.raises(NotImplementedError, match='unpadded'):
        bound(3, torch.randn(2, 17, 8), None, padded, 1)


def test_bound_entries_follow_each_entry_with_a_reducer():
    dense = osp.join(REPO, 'configs/upernet/upernet_deit_s_ade20k.py')
    cait = osp.join(REPO, 'configs/upernet/upernet_cait_s_ade20k.py')
    key = 'model.backbone.token_reducer'
    tps = Entry(dense, {f'{key}.type': 'TPS', f'{key}.keep_ratio': 0.5,
                        'model.backbone.drop_path_rate': 0.})
    triton = Entry(cait, {f'{key}.kernel': 'triton'}, label='triton')
    mask = Entry(cait, {'model.backbone.attn_bias_mode': 'mask'},
                 label='mask')
    entries = bound_entries([Entry(dense, label='deit-s'), tps,
                             Entry(cait, label='cait-s'), triton, mask])
    # the Triton merge and the bias as a mask have the same token counts
    # (and a bound no bias): no second bound
    assert [e.name for e in entries] == [
        'deit-s', tps.name, f'{tps.name} bound', 'cait-s', 'cait-s bound',
        'triton', 'mask']
    # the reducer's dotted keys give way to the bound; other overrides stay
    assert entries[2].overrides == {
        'model.backbone.drop_path_rate': 0.,
        key: dict(type='TokenCountBound',
                  reducer=dict(type='TPS', keep_ratio=0.5))}
    # a config's own reducer is replaced, not merged into
    reducer = entries[4].overrides[key]
    assert reducer.pop('_delete_') is True
    assert reducer['type'] == 'TokenCountBound'
    assert reducer['reducer']['type'] == 'ATME'


def test_benchmark_bound_rows_cost_fewer_operators_at_the_same_flops():
    config = osp.join(REPO, 'tests/data/configs/demo_tiny.py')
    merge = {'model.backbone.token_reducer.type': 'ATME',
             'model.backbone.token_reducer.schedule': [(0, 'h', .5),
                                                       (1, 'v', .5)]}
    dense, merged, bound = benchmark(
        bound_entries([Entry(config), Entry(config, merge)]), (64, 64),
        batch_size=2, part='backbone', warmup=0, repeats=1,
        log=lambda _: None)
    assert bound.name.endswith(' bound')
    assert 0.98 * merged.flops <= bound.flops <= merged.flops < dense.flops
    assert dense.ops <= bound.ops < merged.ops
    assert bound.kernels < merged.kernels
