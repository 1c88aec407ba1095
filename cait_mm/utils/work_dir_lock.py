"""One training run per work directory.

Two runs on one ``--work-dir`` write the same checkpoint names, the same
``last_checkpoint`` and, when they start in the same second, the same log
folder: the checkpoint ``last_checkpoint`` names can end up holding both
runs' bytes. ``tools/train.py`` therefore holds :func:`lock_work_dir` for
the whole run.
"""
import fcntl
import os
import os.path as osp
import socket
import time
import warnings
from typing import Callable, Optional

LOCK_NAME = 'train.lock'

# the open lock files of this process: the lock lasts as long as they stay
# open, and the kernel releases it when the process dies, however it dies
_held = {}


class WorkDirInUseError(RuntimeError):
    """Another live run holds the work directory's lock."""


def _describe(text: str) -> str:
    fields = dict(line.split('=', 1) for line in text.splitlines()
                  if '=' in line)
    if 'pid' not in fields:
        return 'an unknown process'
    return (f'pid {fields["pid"]} on {fields.get("host", "?")}, started '
            f'{fields.get("started", "?")}')


def _read(f) -> str:
    f.seek(0)
    return f.read()


def lock_work_dir(work_dir: str,
                  warn: Optional[Callable[[str], None]] = None) -> str:
    """Take ``work_dir``'s lock for the rest of this process's life.

    The lock is an ``flock`` on ``work_dir/train.lock``, which holds the
    owner's pid, host and start time. A lock left by a process that died
    (its ``flock`` went with it) is taken over, saying whose it was through
    ``warn`` (a ``UserWarning`` by default). Taking a lock this process
    already holds does nothing.

    Returns:
        str: the lock file.

    Raises:
        WorkDirInUseError: another live process holds the lock; the message
            names it (pid, host, start time).
    """
    os.makedirs(work_dir, exist_ok=True)
    path = osp.abspath(osp.join(work_dir, LOCK_NAME))
    if path in _held:
        return path
    while True:
        f = open(path, 'a+')
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(f))
            f.close()
            raise WorkDirInUseError(
                f'Work dir "{work_dir}" is in use by another training run '
                f'({holder}; lock file {path}). Wait for it to end, or give '
                'this run another --work-dir.') from None
        # a run that removed the file after we opened it released a lock
        # nobody else can see: take the lock on the file that is there now
        if osp.exists(path) and os.stat(path).st_ino == os.fstat(
                f.fileno()).st_ino:
            break
        f.close()
    previous = _read(f)
    if previous.strip():
        message = (f'Taking over the lock of work dir "{work_dir}" from '
                   f'{_describe(previous)}, which no longer runs')
        (warn or (lambda m: warnings.warn(m, stacklevel=2)))(message)
    f.seek(0)
    f.truncate()
    f.write(f'pid={os.getpid()}\nhost={socket.gethostname()}\n'
            f'started={time.strftime("%Y-%m-%d %H:%M:%S %z")}\n')
    f.flush()
    _held[path] = f
    return path


def unlock_work_dir(work_dir: str) -> None:
    """Give ``work_dir``'s lock back (a run that ends normally)."""
    path = osp.abspath(osp.join(work_dir, LOCK_NAME))
    f = _held.pop(path, None)
    if f is not None:
        # removed while still held, so that nobody can take it in between
        os.remove(path)
        f.close()
