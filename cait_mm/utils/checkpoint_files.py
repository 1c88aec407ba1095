"""Checkpoint files that are either complete or not there, and errors that
say what is wrong with one.

- :func:`load_local_checkpoint` replaces MMEngine's loader of local files
  (:func:`register_checkpoint_loader`, called by ``import cait_mm``): the
  same ``torch.load`` (torch's ``weights_only`` default, with the MMEngine
  types :mod:`.safe_globals` allows), but a file that is missing, empty,
  truncated, not a checkpoint or holding objects that cannot be loaded
  safely fails with its name and what is wrong, and never with torch's
  advice to retry with ``weights_only=False``.
- :func:`publish` and :func:`write_atomic` write through a temporary file
  in the same folder, flushed to disk, then renamed: a reader (or a resumed
  run) sees the old file or the new one, never half of one.
- :func:`find_resume_checkpoint`: what ``--resume`` continues from, the
  checkpoint ``last_checkpoint`` names or, when that is missing or broken,
  the newest complete one.
"""
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Callable, List, Optional

import torch
from mmengine.runner import CheckpointLoader

# torch.save's zip archive; the legacy format is a pickle (protocol 2 magic)
_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_MAGIC = b'\x80'
# Checkpoints MMEngine's CheckpointHook names (filename_tmpl defaults)
_STEP_NAME = re.compile(r'^(?:epoch|iter)_(\d+)\.pth$')


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file
    and what is wrong with it."""


def checkpoint_problem(path: str) -> Optional[str]:
    """What is wrong with the checkpoint file ``path``, or ``None``.

    Cheap: reads the first bytes and, for torch's zip format, the archive's
    directory (at the end of the file, so a file cut short by a crash has
    none). A legacy pickle checkpoint is only checked when it is loaded.
    """
    if not osp.isfile(path):
        return 'does not exist'
    if osp.getsize(path) == 0:
        return 'is empty (0 bytes; a run may have died while writing it)'
    with open(path, 'rb') as f:
        head = f.read(len(_ZIP_MAGIC))
    if head == _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return ('is truncated or corrupt: its zip archive has no '
                    'directory (a run may have died while writing it)')
        if not any(n == 'data.pkl' or n.endswith('/data.pkl')
                   for n in names):
            return 'is a zip archive but not a PyTorch checkpoint'
        return None
    if head.startswith(_PICKLE_MAGIC):
        return None
    return ('is not a PyTorch checkpoint (neither the zip archive that '
            'torch.save writes nor a pickle)')


def _unsafe_reason(error: Exception) -> str:
    """The part of torch's weights-only error that says what was refused,
    without its advice to turn the check off."""
    for line in str(error).splitlines():
        line = line.strip()
        if line.startswith('WeightsUnpickler error:'):
            return line[len('WeightsUnpickler error:'):].strip()
    return type(error).__name__


def load_local_checkpoint(filename: str, map_location=None):
    """``torch.load`` a local checkpoint, with errors that name the file.

    Raises:
        FileNotFoundError: if the file does not exist.
        CheckpointError: if it is empty, truncated, not a checkpoint, or
            holds objects that ``weights_only`` loading refuses.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint "{filename}" does not exist')
    problem = checkpoint_problem(filename)
    if problem is not None:
        raise CheckpointError(f'Checkpoint "{filename}" {problem}')
    try:
        return torch.load(filename, map_location=map_location)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f'Checkpoint "{filename}" holds objects that cannot be loaded '
            f'safely ({_unsafe_reason(error)}). Checkpoints are loaded with '
            'tensors, plain Python types and the MMEngine types of a '
            'training checkpoint only, because unpickling anything else can '
            'run code from the file. Save the weights you need as a '
            'state dict of tensors.') from None
    except (EOFError, RuntimeError, zipfile.BadZipFile) as error:
        raise CheckpointError(f'Checkpoint "{filename}" is truncated or '
                              f'corrupt: {error}') from None


def register_checkpoint_loader() -> None:
    """Make MMEngine load local checkpoints (``load_from``, ``--resume``,
    ``init_cfg`` ``Pretrained``, tools) with :func:`load_local_checkpoint`.
    """
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)


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


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp_path = f'{path}.tmp'
    with open(tmp_path, 'w') as f:
        f.write(text)
    publish(tmp_path, path)


def _step(path: str) -> int:
    match = _STEP_NAME.match(osp.basename(path))
    return int(match.group(1)) if match else -1


def find_resume_checkpoint(work_dir: str,
                           log: Callable[[str], None] = print
                           ) -> Optional[str]:
    """The checkpoint that ``--resume`` continues from in ``work_dir``.

    The one that ``last_checkpoint`` names when it is complete; otherwise
    (the file is missing, empty or broken, or names a missing or broken
    checkpoint) the newest complete ``iter_N.pth`` / ``epoch_N.pth`` in
    ``work_dir`` and its subfolders, saying so through ``log``. ``None``
    when there is none: the run starts afresh.
    """
    named = None
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip() or None
    if named is not None and checkpoint_problem(named) is None:
        return named
    candidates: List[str] = []
    for folder, _, files in os.walk(work_dir):
        candidates += [osp.join(folder, name) for name in files
                       if _STEP_NAME.match(name)]
    candidates.sort(key=lambda p: (_step(p), osp.getmtime(p)), reverse=True)
    complete = [p for p in candidates if checkpoint_problem(p) is None]
    what = ('has no last_checkpoint' if not osp.isfile(pointer) else
            'has an empty last_checkpoint' if named is None else
            f'has a last_checkpoint naming "{named}", which '
            f'{checkpoint_problem(named)}')
    if complete:
        log(f'{work_dir} {what}: resuming from the newest complete '
            f'checkpoint, {complete[0]}')
        return complete[0]
    if named is not None or candidates:
        log(f'{work_dir} {what}, and holds no complete checkpoint: '
            'training starts afresh')
    return None
