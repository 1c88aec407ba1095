"""Checkpoint files: what is wrong with a broken one, safe loading from
every scheme, and what --resume continues from."""
import os

import pytest
import torch
from mmengine.runner import CheckpointLoader

import cait_mm  # noqa: F401  (registers the loader)
from cait_mm.utils.checkpoint_files import (CheckpointError,
                                            checkpoint_problem,
                                            find_resume_checkpoint,
                                            load_local_checkpoint)


def _save(path, step=1):
    torch.save(dict(state_dict=dict(w=torch.full((64, ), float(step))),
                    meta=dict(iter=step)), path)
    return str(path)


def _truncate(path):
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])


def test_problems_are_named(tmp_path):
    good = _save(tmp_path / 'good.pth')
    assert checkpoint_problem(good) is None
    (tmp_path / 'empty.pth').write_bytes(b'')
    (tmp_path / 'text.pth').write_text('hello')
    bad = _save(tmp_path / 'half.pth')
    _truncate(bad)
    legacy = tmp_path / 'legacy.pth'
    torch.save(dict(a=torch.ones(2)), legacy,
               _use_new_zipfile_serialization=False)
    assert checkpoint_problem(str(legacy)) is None
    expected = {
        'missing.pth': 'does not exist',
        'empty.pth': 'is empty (0 bytes',
        'text.pth': 'is not a PyTorch checkpoint',
        'half.pth': 'is truncated or corrupt',
    }
    for name, problem in expected.items():
        assert checkpoint_problem(str(tmp_path / name)).startswith(problem)


def test_mmengine_loads_through_the_checked_loader(tmp_path):
    path = _save(tmp_path / 'good.pth', 3)
    assert CheckpointLoader.load_checkpoint(path)['meta'] == dict(iter=3)
    with pytest.raises(FileNotFoundError, match='missing.pth" does not'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'missing.pth'))
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(CheckpointError, match='empty.pth" is empty'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'empty.pth'))
    unsafe = tmp_path / 'unsafe.pth'
    torch.save(dict(hook=print), unsafe)
    with pytest.raises(CheckpointError) as error:
        load_local_checkpoint(str(unsafe))
    assert 'cannot be loaded safely (refused GLOBAL print: Unsupported ' \
        'global' in str(error.value)
    assert 'weights_only=False' not in str(error.value)


class _Payload:
    """Unpickling it runs a shell command (creates the file ``path``)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f'touch {self.path}', )


@pytest.mark.parametrize('name, url', [
    ('evil.pth', 'https://example.invalid/models/evil.pth'),
    ('resnet18-f37072fd.pth', 'torchvision://resnet18'),
    ('vgg16_caffe-292e1171.pth', 'open-mmlab://vgg16_caffe'),
])
def test_a_remote_checkpoint_runs_no_code(tmp_path, monkeypatch, name, url):
    """MMEngine fetches http(s), torchvision and open-mmlab checkpoints with
    torch.hub, which unpickles anything; the file in the hub cache (no
    network: it is used as downloaded) is refused, naming what it holds."""
    hub = tmp_path / 'hub'
    (hub / 'checkpoints').mkdir(parents=True)
    monkeypatch.setattr(torch.hub, '_hub_dir', str(hub))
    ran = tmp_path / 'payload_ran'
    torch.save(dict(state_dict={}, meta=_Payload(ran)),
               hub / 'checkpoints' / name)
    with pytest.raises(CheckpointError) as error:
        CheckpointLoader.load_checkpoint(url)
    message = str(error.value)
    assert f'checkpoints/{name}" holds an object that cannot be loaded ' \
        'safely (refused GLOBAL posix.system' in message
    assert f'fetched for {url}' in message
    assert not ran.exists()
    # a good file the same way loads, and torch.load is torch's again
    _save(hub / 'checkpoints' / name, 5)
    assert CheckpointLoader.load_checkpoint(url)['meta'] == dict(iter=5)
    assert torch.load.__module__ == 'torch.serialization'


def _zero_block(path):
    data = bytearray(open(path, 'rb').read())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    open(path, 'wb').write(bytes(data))


def test_a_damaged_or_mixed_checkpoint_is_corrupt(tmp_path):
    zeroed = _save(tmp_path / 'zeroed.pth', 1)
    _zero_block(zeroed)
    # torch itself loads it, with wrong weights
    assert torch.load(zeroed)['state_dict']['w'].sum() != 64
    # the start of one run's checkpoint, the end of another's
    a, b = _save(tmp_path / 'a.pth', 1), _save(tmp_path / 'b.pth', 2)
    mixed = tmp_path / 'mixed.pth'
    data_a, data_b = open(a, 'rb').read(), open(b, 'rb').read()
    mixed.write_bytes(data_a[:len(data_a) // 2] + data_b[len(data_b) // 2:])
    for path in (zeroed, str(mixed)):
        assert checkpoint_problem(path).startswith('is corrupt: the data of '
                                                   'its entry')
        with pytest.raises(CheckpointError, match='is corrupt'):
            CheckpointLoader.load_checkpoint(path)


def test_resume_from_what_last_checkpoint_names_or_the_newest_complete(
        tmp_path):
    messages = []
    assert find_resume_checkpoint(str(tmp_path), messages.append) is None
    assert messages == []
    for step in (1, 2, 10):
        _save(tmp_path / f'iter_{step}.pth', step)
    _truncate(tmp_path / 'iter_10.pth')
    pointer = tmp_path / 'last_checkpoint'
    pointer.write_text(str(tmp_path / 'iter_1.pth'))
    assert find_resume_checkpoint(str(tmp_path), messages.append) == \
        str(tmp_path / 'iter_1.pth')
    assert messages == []
    _save(tmp_path / 'iter_5.pth', 5)
    _zero_block(tmp_path / 'iter_5.pth')
    for named, why in ((str(tmp_path / 'iter_10.pth'),
                        'which is truncated or corrupt'),
                       (str(tmp_path / 'iter_5.pth'), 'which is corrupt'),
                       (str(tmp_path / 'iter_7.pth'), 'which does not exist'),
                       ('', 'has an empty last_checkpoint')):
        pointer.write_text(named)
        assert find_resume_checkpoint(str(tmp_path), messages.append) == \
            str(tmp_path / 'iter_2.pth')  # by step, not by name
        assert why in messages[-1]
        assert messages[-1].endswith(f'checkpoint, {tmp_path}/iter_2.pth')
    pointer.unlink()
    for step in (1, 2):
        (tmp_path / f'iter_{step}.pth').unlink()
    assert find_resume_checkpoint(str(tmp_path), messages.append) is None
    assert 'no complete checkpoint: training starts afresh' in messages[-1]
