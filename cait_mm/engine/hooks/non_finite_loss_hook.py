"""NonFiniteLossHook: a NaN loss stops the run before it spoils the weights.
"""
from typing import Dict, List, Optional

import torch
from mmengine.dist import is_distributed
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict

from cait_mm.registry import HOOKS

ACTIONS = ('stop', 'skip')


def batch_files(data_batch) -> List[str]:
    """The image files of a training batch (as its data samples name them).
    """
    samples = data_batch.get('data_samples') if isinstance(
        data_batch, dict) else None
    files = []
    for sample in samples or []:
        meta = getattr(sample, 'metainfo', None) or {}
        if meta.get('img_path'):
            files.append(str(meta['img_path']))
    return files


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Check the loss of every training step before the optimizer step.

    One NaN or infinite loss (an image with a non-finite pixel, a diverging
    learning rate) gives NaN gradients, and the optimizer step writes NaN
    into the weights; MMEngine trains on, and every later checkpoint is
    NaN. This hook checks the loss before the backward pass
    (``optim_wrapper.update_params``) and

    - ``action='stop'`` (the default): fails the run there, naming the
      iteration, the loss and the batch's image files. Nothing of the step
      is applied or saved, so ``last_checkpoint`` keeps naming the last good
      checkpoint.
    - ``action='skip'``: leaves that step out (no backward, no optimizer
      step, and the buffers the forward pass updated, such as batch-norm
      statistics, are put back as they were) and goes on, logging the
      same. It copies the model's floating-point buffers before every
      step for that.

    In a distributed run every rank skips or stops together (the check is
    all-reduced), as a rank that left out the backward pass would leave
    the others waiting. ``tools/train.py`` adds this hook (``--non-finite``).
    Runs with several optimizers (``OptimWrapperDict``) are not checked.
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: str = 'stop'):
        if action not in ACTIONS:
            raise ValueError(f'action must be one of {ACTIONS}, got '
                             f'{action!r}')
        self.action = action
        self._files: List[str] = []
        self._buffers: Dict[str, torch.Tensor] = {}
        self.skipped = 0

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper
        if isinstance(wrapper, OptimWrapperDict):
            runner.logger.warning(
                'NonFiniteLossHook does not check runs with several '
                'optimizers (OptimWrapperDict)')
            return
        update_params = wrapper.update_params

        def checked_update_params(loss, *args, **kwargs):
            if self._all_finite(loss):
                return update_params(loss, *args, **kwargs)
            self._non_finite(runner, loss)

        wrapper.update_params = checked_update_params

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        self._files = batch_files(data_batch)
        if self.action == 'skip':
            self._buffers = {
                name: buffer.detach().clone()
                for name, buffer in runner.model.named_buffers()
                if buffer.is_floating_point()
            }

    @staticmethod
    def _all_finite(loss: torch.Tensor) -> bool:
        finite = torch.isfinite(loss.detach()).all().float().reshape(1)
        if is_distributed():
            torch.distributed.all_reduce(
                finite, op=torch.distributed.ReduceOp.MIN)
        return bool(finite.item())

    def _non_finite(self, runner, loss: torch.Tensor) -> None:
        value = loss.detach().float()
        value = value.item() if value.numel() == 1 else value.tolist()
        here = torch.isfinite(loss.detach()).all()
        files = ', '.join(self._files) or 'files unknown'
        what = (f'Iteration {runner.iter + 1}: the loss is {value} '
                f'(batch: {files})' if not here else
                f'Iteration {runner.iter + 1}: the loss is not finite on '
                f'another rank (this rank\'s batch: {files})')
        if self.action == 'skip':
            with torch.no_grad():
                for name, buffer in runner.model.named_buffers():
                    if name in self._buffers:
                        buffer.copy_(self._buffers[name])
            self.skipped += 1
            runner.logger.warning(f'{what}; the step is skipped '
                                  f'({self.skipped} skipped so far)')
            return
        message = (f'{what}. Training stopped before the optimizer step, '
                   'so the weights and the checkpoints are those of the '
                   'previous iterations (last_checkpoint names the last '
                   'one); fix the data or the learning rate, or run '
                   'tools/train.py with --non-finite skip to leave such '
                   'steps out.')
        runner.logger.error(message)
        raise FloatingPointError(message)
