"""atomic_output: the final name holds the old file or the whole new one."""
import errno
import os

import pytest

from cait_mm.utils.atomic_write import atomic_output, write_text


def test_write_text_replaces_the_whole_file(tmp_path):
    path = str(tmp_path / 'last_checkpoint')
    write_text(path, 'a' * 100)
    write_text(path, 'b')
    assert open(path).read() == 'b'
    assert os.listdir(tmp_path) == ['last_checkpoint']


def test_a_failed_check_leaves_the_previous_file_and_no_partial(tmp_path):
    path = tmp_path / 'model.onnx'
    path.write_text('good')
    with pytest.raises(SystemExit):
        with atomic_output(str(path)) as tmp:
            assert os.path.dirname(tmp) == str(tmp_path)
            open(tmp, 'w').write('fails its check')
            raise SystemExit('tolerance exceeded')
    assert path.read_text() == 'good'
    assert os.listdir(tmp_path) == ['model.onnx']


def test_a_full_disk_names_the_file_and_removes_the_partial(tmp_path):
    path = str(tmp_path / 'iter_3.pth')
    with pytest.raises(OSError) as error:
        with atomic_output(path) as tmp:
            open(tmp, 'wb').write(b'half')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert error.value.errno == errno.ENOSPC
    assert error.value.filename == path
    assert 'No space left on device' in str(error.value)
    assert os.listdir(tmp_path) == []


def test_the_partial_name_can_keep_the_suffix(tmp_path):
    """For writers that choose the format by the name (a .pkl dumper)."""
    path = str(tmp_path / 'results.pkl')
    with atomic_output(path, keep_suffix=True) as tmp:
        assert tmp == f'{path}.{os.getpid()}.partial.pkl'
        open(tmp, 'wb').write(b'x')
    assert os.listdir(tmp_path) == ['results.pkl']
