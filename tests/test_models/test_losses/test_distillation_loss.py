"""DistillationLoss: DeiT's soft and hard distillation of logits."""
import pytest
import torch
import torch.nn.functional as F

from cait_mm.models import DistillationLoss


def _logits(seed):
    return torch.randn(4, 7, generator=torch.Generator().manual_seed(seed))


def test_soft_is_the_temperature_scaled_kl_divergence():
    s, t = _logits(0), _logits(1)
    T = 3.0
    p_t = F.softmax(t / T, -1)
    expected = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean()
    loss = DistillationLoss('soft', temperature=T, loss_weight=0.25)(s, t)
    torch.testing.assert_close(loss, 0.25 * T * T * expected)
    assert DistillationLoss('soft')(t, t).abs().item() < 1e-6


def test_hard_is_cross_entropy_to_the_teacher_top1():
    s, t = _logits(0), _logits(1)
    loss = DistillationLoss('hard', loss_weight=0.5)(s, t)
    torch.testing.assert_close(loss,
                               0.5 * F.cross_entropy(s, t.argmax(-1)))
    # only the teacher's argmax matters
    torch.testing.assert_close(
        DistillationLoss('hard')(s, t * 10), DistillationLoss('hard')(s, t))


@pytest.mark.parametrize('mode', ['soft', 'hard'])
def test_gradient_reaches_the_student_only(mode):
    s = _logits(0).requires_grad_()
    t = _logits(1).requires_grad_()
    DistillationLoss(mode)(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_bad_settings_and_inputs_fail():
    with pytest.raises(ValueError, match="mode must be one of"):
        DistillationLoss('kl')
    with pytest.raises(ValueError, match='temperature'):
        DistillationLoss('soft', temperature=0)
    with pytest.raises(ValueError, match=r'\(4, 7\).*\(4, 5\)'):
        DistillationLoss()(_logits(0), torch.zeros(4, 5))
