import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

import cait_mm  # noqa: F401  (registers the allow-list)


def test_message_hub_round_trips_under_weights_only(tmp_path):
    hub = MessageHub.get_instance('test_safe_globals')
    for i in range(5):
        hub.update_scalar('train/loss', float(i) / 3)
        hub.update_scalar('val/mIoU', np.float64(40 + i))
    hub.update_info('iter', np.int64(5))
    path = tmp_path / 'ckpt.pth'
    torch.save({'message_hub': hub.state_dict(),
                'meta': {'seed': np.int32(0),
                         'arr': np.arange(3, dtype=np.float32)}}, path)
    loaded = torch.load(path, weights_only=True)
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx(np.mean([i / 3 for i in range(5)]))
    assert buffer.statistics('max') == pytest.approx(4 / 3)
    assert loaded['message_hub']['runtime_info']['iter'] == 5
    np.testing.assert_array_equal(loaded['meta']['arr'], np.arange(3))


class _Evil:

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


class _EvilOS:

    def __reduce__(self):
        import os
        return (os.system, ('echo pwned', ))


def test_other_globals_are_still_refused(tmp_path):
    for payload in (_Evil(), _EvilOS()):
        path = tmp_path / 'evil.pth'
        with open(path, 'wb') as f:
            torch.save({'x': payload}, f)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, weights_only=True)
