"""CDCPHook on a CAITViT, driven like MMEngine's train loop drives it."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub

from cait_mm.engine import CDCPHook
from cait_mm.models import CAITViT

TINY = dict(embed_dims=32, num_layers=4, num_heads=2, mlp_ratio=2.)
GROUPS = dict(groups=('qk', 'v', 'mlp'))


def _runner(model, name):
    return SimpleNamespace(
        model=model, iter=0,
        message_hub=MessageHub.get_instance(f'cdcp-test-{name}'))


def _model(seed=0):
    torch.manual_seed(seed)
    model = CAITViT(arch=TINY, img_size=32, channel_prune=GROUPS)
    model.init_weights()
    return model


def _train(hook, runner, iterations):
    """SGD steps on a toy loss with the hook's calls around each."""
    model = runner.model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    for _ in range(iterations):
        hook.before_train_iter(runner, 0)
        model.train()
        loss = sum(f.pow(2).mean() for f in model(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        hook.after_train_iter(runner, 0)
        runner.iter += 1


def test_targets_ramp_and_every_head_prunes_alike():
    model = _model()
    hook = CDCPHook(ratios=dict(qk=0.5, v=0.25, mlp=[0.5, 0.5, 0.25, 0.]),
                    interval=2, begin=2, end=6, lasso=0.)
    runner = _runner(model, 'ramp')
    hook.before_train(runner)
    seen = []
    for _ in range(8):
        hook.before_train_iter(runner, 0)
        seen.append(int(model.blocks[0].attn.qk_compactor.pruned.sum()))
        runner.iter += 1
    # qk: 16 dims per head, 2 heads; ramp 0 -> 0.5 over iterations 2..6,
    # re-ranked every 2 iterations
    assert seen == [0, 0, 0, 0, 8, 8, 16, 16]
    for entries in model.channel_groups().values():
        for index, group in entries:
            counts = group.pruned.sum(-1)
            assert (counts == counts[0]).all()
    mlp = [int(g.pruned.sum()) for _, g in model.channel_groups()['mlp']]
    assert mlp == [32, 32, 16, 0]
    assert hook.last_selection == 6


def test_training_prunes_logs_and_exports_consistently():
    model = _model()
    hook = CDCPHook(ratios=dict(qk=0.5, v=0.5, mlp=0.5), interval=1,
                    end=1, lasso=0.2)
    runner = _runner(model, 'train')
    hook.before_train(runner)
    _train(hook, runner, 10)
    scalars = runner.message_hub.log_scalars
    for kind in ('qk', 'v', 'mlp'):
        assert scalars[f'train/cdcp/{kind}_sparsity'].current() == 0.5
    # selected from iteration 1 on, 9 lasso steps of 0.2 took every
    # selected compactor row (norm about 1, sqrt(2) for q and k) to zero
    for entries in model.channel_groups().values():
        for _, group in entries:
            assert group.weight[:, group.pruned].abs().max() == 0
    # so the trained (unmasked) model, the masked model and the export agree
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        model.train()
        unmasked = model(x)[0]
        model.eval()
        masked = model(x)[0]
        exported = model.compact()(x)[0]
    torch.testing.assert_close(unmasked, masked, rtol=0, atol=1e-5)
    torch.testing.assert_close(exported, masked, rtol=0, atol=1e-5)
    assert model.channel_widths[0] == dict(qk_dim=8, v_dim=8, mlp_hidden=32)


def test_state_round_trips_through_a_checkpoint():
    hook = CDCPHook(ratios=dict(qk=0.5, v=0.5, mlp=0.5), interval=3)
    hook.last_selection = 9
    checkpoint = dict(meta=dict(iter=10))
    hook.before_save_checkpoint(None, checkpoint)
    restored = CDCPHook(ratios=dict(qk=0.5, v=0.5, mlp=0.5), interval=3)
    restored.after_load_checkpoint(None, checkpoint)
    assert restored.state_dict() == hook.state_dict() == dict(
        last_selection=9)


def test_bad_settings_fail_before_training():
    runner = _runner(_model(), 'bad')
    with pytest.raises(ValueError, match='qk group 0: pruning ratio 1.0 would '
                       'leave no qk channel'):
        CDCPHook(ratios=dict(qk=1.0, v=0.5, mlp=0.5)).before_train(runner)
    with pytest.raises(ValueError, match=r"no ratio for \['mlp'\]"):
        CDCPHook(ratios=dict(qk=0.5, v=0.5)).before_train(runner)
    with pytest.raises(ValueError, match='has 3 entries for 4 blocks'):
        CDCPHook(ratios=dict(qk=0.5, v=0.5,
                             mlp=[0.5] * 3)).before_train(runner)
    partial = _runner(
        CAITViT(arch=TINY, channel_prune=dict(groups=('mlp', ))), 'partial')
    with pytest.raises(ValueError, match=r"no compactors for \['qk'\]"):
        CDCPHook(ratios=dict(qk=0.5, mlp=0.5)).before_train(partial)
    with pytest.raises(RuntimeError, match='found no compactors'):
        CDCPHook(ratios=dict(qk=0.5)).before_train(
            _runner(CAITViT(arch=TINY), 'none'))
    with pytest.raises(ValueError, match='interval >= 1'):
        CDCPHook(ratios=dict(qk=0.5), interval=0)
