"""cait_mm.LayerDecayOptimizerConstructor on a CAITViT model."""
import pytest
from mmengine.optim import build_optim_wrapper
from torch import nn

from cait_mm.models import CAITViT

DEPTH = 4
BASE_LR = 1e-3
WD = 0.05


class ViTWithHead(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = CAITViT(
            arch=dict(embed_dims=24, num_layers=DEPTH, num_heads=2,
                      mlp_ratio=2.),
            img_size=32,
            patch_size=8,
            final_norm=True)
        self.head = nn.Linear(24, 3)


def build(**paramwise):
    model = ViTWithHead()
    wrapper = build_optim_wrapper(
        model,
        dict(
            constructor='cait_mm.LayerDecayOptimizerConstructor',
            optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD),
            paramwise_cfg=paramwise))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {
        names[id(g['params'][0])]: g
        for g in wrapper.optimizer.param_groups
    }
    return model, groups, wrapper


def test_lr_decays_with_depth_and_keeps_the_default_rules():
    model, groups, _ = build(
        decay_rate=0.5,
        norm_decay_mult=0.,
        custom_keys={'pos_embed': dict(decay_mult=0.)})
    assert set(groups) == {n for n, _ in model.named_parameters()}
    top = DEPTH + 1

    def lr(name):
        return groups[name]['lr']

    for name in ('backbone.cls_token', 'backbone.pos_embed',
                 'backbone.patch_embed.proj.weight'):
        assert lr(name) == pytest.approx(BASE_LR * 0.5**top)
    for i in range(DEPTH):
        block = [n for n in groups if n.startswith(f'backbone.blocks.{i}.')]
        assert block
        for name in block:
            assert lr(name) == pytest.approx(BASE_LR * 0.5**(top - i - 1))
    # the final norm and the head are not decayed
    assert lr('head.weight') == pytest.approx(BASE_LR)
    norms = [n for n in groups if n.startswith('backbone.norm')]
    assert norms and all(lr(n) == pytest.approx(BASE_LR) for n in norms)
    # the default constructor's rules still apply
    assert groups['backbone.pos_embed']['weight_decay'] == 0.
    assert groups['backbone.norm.weight']['weight_decay'] == 0.
    assert groups['head.weight'].get('weight_decay', WD) == WD


def test_schedulers_scale_the_decayed_lrs_together():
    from mmengine.optim.scheduler import MultiStepLR
    wrapper = build(decay_rate=0.8)[2]
    optimizer = wrapper.optimizer
    first = [g['lr'] for g in optimizer.param_groups]
    assert len(set(first)) == DEPTH + 2
    scheduler = MultiStepLR(optimizer, milestones=[1], gamma=0.1)
    optimizer.step()
    scheduler.step()
    for group, lr in zip(optimizer.param_groups, first):
        assert group['lr'] == pytest.approx(lr * 0.1)


def test_decay_rate_one_is_the_default_constructor():
    _, groups, _ = build(decay_rate=1.0)
    assert all(g['lr'] == pytest.approx(BASE_LR) for g in groups.values())


@pytest.mark.parametrize('paramwise, message', [
    (dict(), 'decay_rate'),
    (dict(decay_rate=0.), 'decay_rate'),
    (dict(decay_rate=1.5), 'decay_rate'),
    (dict(decay_rate=0.7, num_layers=0), 'num_layers'),
    (dict(decay_rate=0.7, backbone='encoder'), 'encoder.blocks'),
])
def test_bad_config_names_the_key(paramwise, message):
    with pytest.raises(ValueError, match=message):
        build(**paramwise)
