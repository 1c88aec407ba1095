"""One training run per work dir: a live holder is named, a dead one's lock
is taken over."""
import os
import subprocess
import sys

import pytest

from cait_mm.utils.work_dir_lock import (LOCK_NAME, WorkDirInUseError,
                                         lock_work_dir, unlock_work_dir)

HOLD = ('import sys; from cait_mm.utils.work_dir_lock import lock_work_dir; '
        'lock_work_dir(sys.argv[1]); print("locked", flush=True); '
        'sys.stdin.read()')


def test_a_live_holder_is_named_and_a_dead_ones_lock_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, '-c', HOLD, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == 'locked\n'
        with pytest.raises(WorkDirInUseError,
                           match=f'in use by another training run \\(pid '
                           f'{holder.pid} on .*, started 20'):
            lock_work_dir(str(tmp_path))
    finally:
        holder.kill()  # dies holding it: the lock file stays
        holder.wait()
    assert f'pid={holder.pid}' in (tmp_path / LOCK_NAME).read_text()
    warnings = []
    lock_work_dir(str(tmp_path), warn=warnings.append)
    assert len(warnings) == 1 and f'from pid {holder.pid} on' in warnings[0]
    assert f'pid={os.getpid()}' in (tmp_path / LOCK_NAME).read_text()
    unlock_work_dir(str(tmp_path))
    assert not (tmp_path / LOCK_NAME).exists()
    warnings.clear()
    lock_work_dir(str(tmp_path), warn=warnings.append)  # a clean end: quiet
    assert warnings == []
    unlock_work_dir(str(tmp_path))
