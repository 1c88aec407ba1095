"""Checkpoint files that are either complete or not there, and errors that
say what is wrong with one.

- :func:`load_local_checkpoint` replaces MMEngine's loader of local files
  (:func:`register_checkpoint_loader`, called by ``import cait_mm``):
  ``torch.load`` with ``weights_only=True`` (and the MMEngine types
  :mod:`.safe_globals` allows), but a file that is missing, empty,
  truncated, corrupt, not a checkpoint or holding objects that cannot be
  loaded safely fails with its name and what is wrong, and never with
  torch's advice to retry with ``weights_only=False``.
- Every other MMEngine scheme (``http(s)://``, ``torchvision://``,
  ``open-mmlab://``, ``mmcls://``, ``s3://``, ...) is loaded by MMEngine's
  own loader, which downloads or resolves the file, but its ``torch.load``
  is this module's: torch.hub loads with ``weights_only=False``, which runs
  any code a downloaded file holds.
- :func:`find_resume_checkpoint`: what ``--resume`` continues from, the
  checkpoint ``last_checkpoint`` names or, when that is missing or broken,
  the newest complete one.

Checkpoints are written through :mod:`cait_mm.utils.atomic_write`.
"""
import functools
import os
import os.path as osp
import pickle
import re
import zipfile
import zlib
from contextlib import contextmanager
from typing import Callable, List, Optional

import torch
from mmengine.runner import CheckpointLoader

# torch.save's zip archive; the legacy format is a pickle (protocol 2 magic)
_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_MAGIC = b'\x80'
# Checkpoints MMEngine's CheckpointHook names (filename_tmpl defaults)
_STEP_NAME = re.compile(r'^(?:epoch|iter)_(\d+)\.pth$')
# torch's own load: MMEngine's remote loaders call ``torch.load``, which
# _safe_torch_load replaces while they run
_torch_load = torch.load


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file
    and what is wrong with it."""


def checkpoint_problem(path: str) -> Optional[str]:
    """What is wrong with the checkpoint file ``path``, or ``None``.

    For torch's zip format, the archive's directory must be there (it is at
    the end of the file, so a file cut short by a crash has none) and every
    entry must match the CRC-32 the directory holds for it: torch itself
    checks none, so a damaged block or a file two writers wrote into would
    load as wrong weights. That reads the whole file once, at disk speed. A
    legacy pickle checkpoint is only checked when it is loaded.
    """
    if not osp.isfile(path):
        return 'does not exist'
    if osp.getsize(path) == 0:
        return 'is empty (0 bytes; a run may have died while writing it)'
    with open(path, 'rb') as f:
        head = f.read(len(_ZIP_MAGIC))
    if head == _ZIP_MAGIC:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError):
            return ('is truncated or corrupt: its zip archive has no '
                    'directory (a run may have died while writing it)')
        with archive:
            if not any(n == 'data.pkl' or n.endswith('/data.pkl')
                       for n in archive.namelist()):
                return 'is a zip archive but not a PyTorch checkpoint'
            try:
                damaged = archive.testzip()
            except (zipfile.BadZipFile, OSError, EOFError,
                    zlib.error) as error:
                return f'is corrupt: {error}'
        if damaged is not None:
            return (f'is corrupt: the data of its entry "{damaged}" does not '
                    'match the checksum written with it (a damaged file, or '
                    'one that two runs wrote into at once)')
        return None
    if head.startswith(_PICKLE_MAGIC):
        return None
    return ('is not a PyTorch checkpoint (neither the zip archive that '
            'torch.save writes nor a pickle)')


def _refused(error: Exception) -> str:
    """What torch's weights-only unpickler refused (e.g. ``GLOBAL
    posix.system``) and why, without its advice to turn the check off."""
    for line in str(error).splitlines():
        line = line.strip()
        if line.startswith('WeightsUnpickler error:'):
            line = line[len('WeightsUnpickler error:'):].strip()
        if 'GLOBAL' in line or line.startswith('Unsupported'):
            reason = line.split('. Please use')[0].rstrip('.')
            name = re.search(r'GLOBAL (\S+)', line)
            return (f'{name.group(0)}: {reason}' if name else reason)
    return type(error).__name__


def _unsafe(name: str, error: Exception) -> CheckpointError:
    return CheckpointError(
        f'Checkpoint "{name}" holds an object that cannot be loaded safely '
        f'(refused {_refused(error)}). Checkpoints are loaded with tensors, '
        'plain Python types and the MMEngine types of a training checkpoint '
        'only, because unpickling anything else can run code from the file. '
        'Save the weights you need as a state dict of tensors.')


def load_local_checkpoint(filename: str, map_location=None):
    """``torch.load`` a local checkpoint, with errors that name the file.

    Raises:
        FileNotFoundError: if the file does not exist.
        CheckpointError: if it is empty, truncated, corrupt, not a
            checkpoint, or holds objects that ``weights_only`` loading
            refuses.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint "{filename}" does not exist')
    problem = checkpoint_problem(filename)
    if problem is not None:
        raise CheckpointError(f'Checkpoint "{filename}" {problem}')
    try:
        return _torch_load(filename, map_location=map_location,
                           weights_only=True)
    except pickle.UnpicklingError as error:
        raise _unsafe(filename, error) from None
    except (EOFError, RuntimeError, zipfile.BadZipFile) as error:
        raise CheckpointError(f'Checkpoint "{filename}" is truncated or '
                              f'corrupt: {error}') from None


@contextmanager
def _safe_torch_load(source: str):
    """Make ``torch.load`` safe while MMEngine's loader of ``source`` runs:
    a downloaded or cached file is loaded by :func:`load_local_checkpoint`,
    a buffer (object stores) weights-only, whatever the caller asks for."""
    def load(f, map_location=None, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            try:
                return load_local_checkpoint(os.fspath(f), map_location)
            except CheckpointError as error:
                raise CheckpointError(f'{error} (fetched for {source})') \
                    from None
        try:
            return _torch_load(f, map_location=map_location,
                               weights_only=True)
        except pickle.UnpicklingError as error:
            raise _unsafe(source, error) from None

    torch.load = load
    try:
        yield
    finally:
        torch.load = _torch_load


def _safe_scheme(loader: Callable) -> Callable:
    @functools.wraps(loader)
    def load(filename, *args, **kwargs):
        with _safe_torch_load(filename):
            return loader(filename, *args, **kwargs)

    load.cait_mm_safe = True
    return load


def register_checkpoint_loader() -> None:
    """Make MMEngine load checkpoints (``load_from``, ``--resume``,
    ``init_cfg`` ``Pretrained``, ``compressed``, tools) safely: local files
    with :func:`load_local_checkpoint`, every other registered scheme
    through its MMEngine loader with :func:`_safe_torch_load`.
    """
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if prefix and not getattr(loader, 'cait_mm_safe', False):
            CheckpointLoader.register_scheme(
                prefixes=prefix, loader=_safe_scheme(loader), force=True)
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)


def _step(path: str) -> int:
    match = _STEP_NAME.match(osp.basename(path))
    return int(match.group(1)) if match else -1


def find_resume_checkpoint(work_dir: str,
                           log: Callable[[str], None] = print
                           ) -> Optional[str]:
    """The checkpoint that ``--resume`` continues from in ``work_dir``.

    The one that ``last_checkpoint`` names when it is complete; otherwise
    (the file is missing, empty or broken, or names a missing, broken or
    corrupt checkpoint) the newest complete ``iter_N.pth`` /
    ``epoch_N.pth`` in ``work_dir`` and its subfolders, saying so (and what
    is wrong with each newer one) through ``log``. ``None`` when there is
    none: the run starts afresh.
    """
    named = None
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip() or None
    named_problem = checkpoint_problem(named) if named else None
    if named is not None and named_problem is None:
        return named
    candidates: List[str] = []
    for folder, _, files in os.walk(work_dir):
        candidates += [osp.join(folder, name) for name in files
                       if _STEP_NAME.match(name)]
    candidates.sort(key=lambda p: (_step(p), osp.getmtime(p)), reverse=True)
    what = ('has no last_checkpoint' if not osp.isfile(pointer) else
            'has an empty last_checkpoint' if named is None else
            f'has a last_checkpoint naming "{named}", which '
            f'{named_problem}')
    for path in candidates:
        problem = checkpoint_problem(path) if path != named else \
            named_problem
        if problem is None:
            log(f'{work_dir} {what}: resuming from the newest complete '
                f'checkpoint, {path}')
            return path
        if path != named:
            log(f'skipping "{path}", which {problem}')
    if named is not None or candidates:
        log(f'{work_dir} {what}, and holds no complete checkpoint: '
            'training starts afresh')
    return None
