"""Checkpoint files: what is wrong with a broken one, atomic writes, and
what --resume continues from."""
import os

import pytest
import torch
from mmengine.runner import CheckpointLoader

import cait_mm  # noqa: F401  (registers the loader)
from cait_mm.utils.checkpoint_files import (CheckpointError,
                                            checkpoint_problem,
                                            find_resume_checkpoint,
                                            load_local_checkpoint,
                                            write_atomic)


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
    assert 'cannot be loaded safely (Unsupported global' in str(error.value)
    assert 'weights_only=False' not in str(error.value)


def test_write_atomic_replaces_the_whole_file(tmp_path):
    path = str(tmp_path / 'last_checkpoint')
    write_atomic(path, 'a' * 100)
    write_atomic(path, 'b')
    assert open(path).read() == 'b'
    assert os.listdir(tmp_path) == ['last_checkpoint']


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
    for named, why in ((str(tmp_path / 'iter_10.pth'),
                        'which is truncated or corrupt'),
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
