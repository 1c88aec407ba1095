"""ProgressBarHook: a progress bar over a test or validation run, for the
tools that evaluate many rows in one go (``tools/compress.py``)."""
import sys
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar

from cait_mm.registry import HOOKS


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """Draw mmengine's :class:`~mmengine.utils.ProgressBar` over the batches
    of every test and validation loop, on the main process, to ``stderr``
    (stdout stays the tools' tables).

    Args:
        title (str, optional): Printed before each bar, e.g. the row's name.
    """

    def __init__(self, title: Optional[str] = None):
        self.title = title
        self._bar: Optional[ProgressBar] = None

    def _start(self, runner, loader) -> None:
        if not is_main_process():
            return
        if self.title:
            print(self.title, file=sys.stderr, flush=True)
        self._bar = ProgressBar(len(loader), file=sys.stderr)

    def _step(self) -> None:
        if self._bar is not None:
            self._bar.update()

    def _end(self) -> None:
        if self._bar is not None:
            sys.stderr.write('\n')
            self._bar = None

    def before_test_epoch(self, runner) -> None:
        self._start(runner, runner.test_dataloader)

    def before_val_epoch(self, runner) -> None:
        self._start(runner, runner.val_dataloader)

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        self._step()

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None) -> None:
        self._step()

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._end()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._end()
