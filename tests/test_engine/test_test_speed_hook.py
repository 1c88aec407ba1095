"""TestSpeedHook: images/s of a test run after its warm-up batches."""
import logging
from types import SimpleNamespace

import pytest

from cait_mm.engine import TestSpeedHook


class _Logger:

    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append((logging.INFO, msg))

    def warning(self, msg):
        self.lines.append((logging.WARNING, msg))


def _run(hook, batch_sizes):
    """The hook through a test loop's calls; the metrics and log lines."""
    runner = SimpleNamespace(logger=_Logger())
    metrics = dict(mIoU=50.)
    hook.before_test(runner)
    for i, size in enumerate(batch_sizes):
        hook.before_test_iter(runner, i, None)
        hook.after_test_iter(runner, i, None, outputs=[None] * size)
    hook.after_test_epoch(runner, metrics)
    return metrics, runner.logger.lines


def _images(lines):
    msg = next(msg for _, msg in lines if msg.startswith('test speed:'))
    return int(msg.split('(')[1].split()[0])


def test_counts_the_images_after_the_warm_up_batches():
    metrics, lines = _run(TestSpeedHook(warmup=2), [2, 2, 2, 2, 1])
    assert _images(lines) == 5
    assert metrics['mIoU'] == 50. and metrics['images_per_s'] > 0
    assert 'after 2 warm-up batches' in lines[0][1]


def test_without_warm_up_every_batch_counts():
    assert _images(_run(TestSpeedHook(warmup=0), [3, 3])[1]) == 6


def test_a_run_no_longer_than_its_warm_up_measures_nothing():
    metrics, lines = _run(TestSpeedHook(warmup=5), [1, 1, 1])
    assert metrics == dict(mIoU=50.)
    assert len(lines) == 1 and lines[0][0] == logging.WARNING
    assert 'no speed measured' in lines[0][1]


def test_a_second_run_starts_from_zero():
    hook = TestSpeedHook(warmup=1)
    _run(hook, [4, 4, 4])
    assert _images(_run(hook, [1, 1])[1]) == 1


def test_it_runs_before_the_hook_that_logs_the_metrics():
    from mmengine.hooks import RuntimeInfoHook
    from mmengine.runner.priority import get_priority
    assert get_priority(TestSpeedHook.priority) < get_priority(
        RuntimeInfoHook.priority)


@pytest.mark.parametrize('warmup', [-1, 1.5])
def test_bad_warm_up_is_refused(warmup):
    with pytest.raises(ValueError, match='warmup'):
        TestSpeedHook(warmup=warmup)
