"""TestSpeedHook: images per second of a whole test run, as a user gets them
(data loading, preprocessing, model, post-processing and metric updates)."""
import time
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook

from cait_mm.registry import HOOKS


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@HOOKS.register_module()
class TestSpeedHook(Hook):
    """Time the test loop after ``warmup`` batches and report the images
    per second with the scores: ``images_per_s`` joins the test metrics
    (the log line and the run's JSON log, beside mIoU or mAP).

    The first batches of a run build shape tables and, with ``--compile``,
    compile and record CUDA graphs: they are left out, so the figure is
    the steady speed of the evaluation path. The clock starts after the
    ``warmup``-th batch and stops when the metrics are computed (the GPU
    synchronised at both ends), so it covers everything a test run does
    per image, data loading included.

    Args:
        warmup (int): Batches left out at the start.
    """

    # before RuntimeInfoHook (VERY_HIGH), which hands the metrics on to
    # the logger
    priority = 'HIGHEST'

    def __init__(self, warmup: int = 5):
        if not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f'warmup must be an int >= 0, got {warmup!r}')
        self.warmup = warmup
        self._start: Optional[float] = None
        self._images = 0
        self._batches = 0

    def before_test(self, runner) -> None:
        self._start, self._images, self._batches = None, 0, 0
        if self.warmup == 0:
            _sync()
            self._start = time.perf_counter()

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs=None) -> None:
        self._batches += 1
        if self._batches > self.warmup:
            self._images += len(outputs) if outputs is not None else 1
        elif self._batches == self.warmup:
            # loading the next batch is part of what is timed
            _sync()
            self._start = time.perf_counter()

    def after_test_epoch(self, runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        _sync()
        if self._start is None or self._images == 0:
            runner.logger.warning(
                f'TestSpeedHook: {self._batches} batches, not more than the '
                f'{self.warmup} warm-up batches: no speed measured')
            return
        seconds = time.perf_counter() - self._start
        speed = self._images / seconds
        runner.logger.info(
            f'test speed: {speed:.2f} images/s ({self._images} images in '
            f'{seconds:.2f} s after {self.warmup} warm-up batches)')
        if metrics is not None:
            metrics['images_per_s'] = speed
