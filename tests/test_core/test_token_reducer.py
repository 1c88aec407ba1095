"""The token-reducer slot: a reducer is one registered class; the ViT asks
every reducer the same questions and never looks at its class."""
from dataclasses import replace

import pytest
import torch

from cait_mm.core import (ATME, TOKEN_REDUCERS, TokenReducer, TokenState,
                          build_token_reducer, register_token_reducer)


@register_token_reducer
class KeepEven(TokenReducer):
    """A third reducer, for the test: at its blocks, every odd patch token
    is dropped and its patch handed to the token before it; the mean square
    of the kept tokens is its loss."""

    def __init__(self, num_layers, embed_dims=None, blocks=(1, ),
                 weight=1.0):
        super().__init__(num_layers, embed_dims)
        self.at = tuple(blocks)
        self.weight = weight
        self._loss = None

    @property
    def blocks(self):
        return set(self.at)

    def settings(self):
        return dict(blocks=list(self.at), weight=self.weight)

    def losses(self):
        return {} if self._loss is None else dict(loss_keep_even=self._loss)

    def forward(self, block_index, x, attn, state, num_prefix):
        B, T, _ = x.shape
        N = T - num_prefix
        x = torch.cat([x[:, :num_prefix], x[:, num_prefix::2]], dim=1)
        moved = (torch.arange(N) // 2).expand(B, N)
        source = moved if state.source is None else moved.gather(
            1, state.source)
        self._loss = self.weight * x.pow(2).mean()
        return x, replace(state, shape=None, source=source)


def test_registered_reducers_build_by_name():
    assert {'ATME', 'TPS', 'KeepEven'} <= set(TOKEN_REDUCERS)
    reducer = build_token_reducer(dict(type='KeepEven', blocks=(2, )),
                                  num_layers=4, embed_dims=8)
    assert isinstance(reducer, KeepEven) and reducer.embed_dims == 8
    assert reducer.config() == dict(type='KeepEven', blocks=[2], weight=1.0)
    assert build_token_reducer(reducer.config(), 4).blocks == {2}
    # what the ViT may ask of any reducer, answered by the base class
    atme = ATME(4, schedule=[(1, 'h', 0.5)])
    assert not atme.needs_class_token and atme.losses() == {}
    assert atme.config()['type'] == 'ATME'


def test_registration_is_checked():
    with pytest.raises(TypeError, match='is not a TokenReducer'):
        register_token_reducer(dict)
    with pytest.raises(KeyError, match='"ATME" is already registered'):
        register_token_reducer(type('ATME', (TokenReducer, ), {}))
    with pytest.raises(ValueError, match='needs a type|is a dict with a type'):
        build_token_reducer(dict(blocks=(1, )), 4)


def test_a_new_reducer_runs_in_the_vit_and_restores_the_grid():
    from cait_mm.models import CAITViT
    from cait_mm.models.reducer_losses import add_reducer_losses
    torch.manual_seed(0)
    model = CAITViT(
        arch=dict(embed_dims=16, num_layers=3, num_heads=2, mlp_ratio=2.),
        img_size=32, out_indices=(0, 2),
        token_reducer=dict(type='KeepEven', blocks=(1, ), weight=2.))
    model.init_weights()
    x = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        tokens, state = model.embed(x)
        seen = {i: (t.shape[1], s) for i, t, s in model.run_blocks(
            tokens, state)}
        first, last = model(x)
    assert seen[0][0] == 1 + 8 and seen[2][0] == 1 + 4
    assert isinstance(seen[2][1], TokenState)
    assert first.shape == last.shape == (2, 16, 2, 4)
    # restored through the source map: patch 2j + 1 holds token j's value
    assert torch.equal(last.flatten(2)[..., 0::2], last.flatten(2)[..., 1::2])
    assert model.compression_spec().token_reducer == dict(
        type='KeepEven', blocks=[1], weight=2.)
    losses = add_reducer_losses({'loss_ce': torch.tensor(1.)}, model)
    assert set(losses) == {'loss_ce', 'loss_keep_even'}
