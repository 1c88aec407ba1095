"""Files that are complete or absent: every file cait_mm writes (checkpoints,
exports, converted data, tables) goes through :func:`atomic_output`.

A file written in place is half a file for as long as it is being written:
a kill, a full disk or a failed check in that time leaves a broken file
under the final name, and the previous good one is already gone. Here the
file is written under a temporary name in the same folder (a rename across
file systems would be a copy), flushed to disk and renamed onto the final
name in one step; on an error the temporary file is removed and the final
name keeps what it held before.
"""
import errno
import os
import os.path as osp
from contextlib import contextmanager
from typing import Iterator

#: suffix of the temporary files; a killed writer's leftovers end in it
PARTIAL = '.partial'


def partial_path(path: str, keep_suffix: bool = False) -> str:
    """The temporary name :func:`atomic_output` writes ``path`` under.

    It holds the writer's pid, so that two processes writing the same file
    never write into one temporary file (the last rename wins, whole). With
    ``keep_suffix``, it ends in ``path``'s suffix too, for writers that
    choose the format by the name (``x.pkl.<pid>.partial.pkl``).
    """
    suffix = osp.splitext(path)[1] if keep_suffix else ''
    return f'{path}.{os.getpid()}{PARTIAL}{suffix}'


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp_path: str, path: str) -> None:
    """Move the complete file ``tmp_path`` (in ``path``'s folder) to
    ``path`` in one step, after flushing it to disk."""
    _fsync(tmp_path)
    os.replace(tmp_path, path)
    _fsync(osp.dirname(osp.abspath(path)))


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_output(path: str, keep_suffix: bool = False) -> Iterator[str]:
    """Write ``path`` through a temporary file.

    Yields the temporary path (:func:`partial_path`, ``keep_suffix`` passed
    on) to write to; when the
    block ends without an error the file is published as ``path``
    (:func:`publish`). When the block raises (a failed write, a check of the
    written file that fails, ``SystemExit``) the temporary file is removed,
    ``path`` is left as it was, and an ``OSError`` that names no file (a
    full disk: ``write`` reports none) is raised again naming ``path``.
    """
    tmp_path = partial_path(path, keep_suffix)
    try:
        yield tmp_path
        publish(tmp_path, path)
    except BaseException as error:
        _remove(tmp_path)
        if isinstance(error, OSError) and error.filename is None:
            cause = error.strerror or str(error) or type(error).__name__
            raise OSError(error.errno or errno.EIO,
                          f'{cause} (while writing it; nothing was written '
                          'under this name)', path) from error
        raise


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp_path:
        with open(tmp_path, 'wb') as f:
            f.write(data)


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp_path:
        with open(tmp_path, 'w') as f:
            f.write(text)
