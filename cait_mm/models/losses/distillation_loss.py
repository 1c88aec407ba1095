"""DeiT's distillation losses on classification logits."""
import torch.nn.functional as F
from torch import Tensor, nn

from cait_mm.registry import MODELS


@MODELS.register_module()
class DistillationLoss(nn.Module):
    """Distil a teacher's logits into a student's.

    - ``'soft'``: ``T**2 * KL(softmax(t / T) || softmax(s / T))``, averaged
      over the batch (Hinton's scaling keeps the gradient size independent
      of ``T``; DeiT's code divides its sum by the number of logits
      instead, which is the same loss times ``1 / num_classes``).
    - ``'hard'``: cross-entropy of the student to the teacher's top-1
      class (DeiT's hard distillation).

    DeiT trains with ``(1 - alpha) * classification + alpha * distillation``:
    set ``loss_weight=alpha`` here and ``loss_weight=1 - alpha`` on the
    head's loss.

    Args:
        mode (str): ``'soft'`` or ``'hard'``.
        temperature (float): ``T`` of the soft loss.
        loss_weight (float): Factor of the loss.
    """
    MODES = ('soft', 'hard')

    def __init__(self,
                 mode: str = 'soft',
                 temperature: float = 1.0,
                 loss_weight: float = 1.0):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f'DistillationLoss: mode must be one of '
                             f'{self.MODES}, got {mode!r}')
        if not temperature > 0:
            raise ValueError('DistillationLoss: temperature must be > 0, got '
                             f'{temperature}')
        self.mode = mode
        self.temperature = float(temperature)
        self.loss_weight = float(loss_weight)

    def extra_repr(self) -> str:
        return (f'mode={self.mode!r}, temperature={self.temperature}, '
                f'loss_weight={self.loss_weight}')

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """
        Args:
            student (Tensor): Student logits ``(B, K)``.
            teacher (Tensor): Teacher logits ``(B, K)``; no gradient flows
                into them.

        Returns:
            Tensor: the weighted loss, a scalar.
        """
        if student.shape != teacher.shape:
            raise ValueError(
                f'DistillationLoss: student logits {tuple(student.shape)} '
                f'and teacher logits {tuple(teacher.shape)} differ: the '
                'teacher must predict the same classes as the student')
        teacher = teacher.detach().float()
        student = student.float()
        if self.mode == 'hard':
            loss = F.cross_entropy(student, teacher.argmax(dim=-1))
        else:
            T = self.temperature
            loss = F.kl_div(
                F.log_softmax(student / T, dim=-1),
                F.log_softmax(teacher / T, dim=-1),
                reduction='batchmean',
                log_target=True) * (T * T)
        return self.loss_weight * loss
