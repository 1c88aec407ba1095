"""``python tests/test_tools/die_while_saving.py N [--match S] [--enospc]
TOOL ARGS``: run the tool, and on its N-th write of a checkpoint or export
(a ``.pth`` through MMEngine's file backend or ``torch.save``, an ``.onnx``
through ``torch.onnx.export``; with ``--match``, only files whose name holds
S are counted), write half of the file and die at once (``os._exit``), as a
killed job does, or, with ``--enospc``, fail as a full disk does (``OSError``
ENOSPC, naming no file, as ``write`` does); every other file is written as
usual."""
import errno
import io
import os
import os.path as osp
import runpy
import sys
import tempfile

import torch
from mmengine.fileio.backends import LocalBackend

DIE_AT = int(sys.argv[1])
del sys.argv[1]
MATCH = ''
if sys.argv[1] == '--match':
    MATCH = sys.argv[2]
    del sys.argv[1:3]
ENOSPC = sys.argv[1] == '--enospc'
if ENOSPC:
    del sys.argv[1]
_writes = []


def _maybe_die(data: bytes, filepath) -> None:
    name = osp.basename(str(filepath))
    if MATCH not in name or not name.endswith(
            ('.pth', '.onnx', '.partial')):
        return
    _writes.append(filepath)
    if len(_writes) == DIE_AT:
        with open(filepath, 'wb') as f:
            f.write(data[:len(data) // 2])
        if ENOSPC:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os._exit(9)


_put = LocalBackend.put


def put(self, obj, filepath):
    _maybe_die(obj, filepath)
    return _put(self, obj, filepath)


_save = torch.save


def save(obj, f, *args, **kwargs):
    if isinstance(f, (str, os.PathLike)):
        buffer = io.BytesIO()
        _save(obj, buffer, *args, **kwargs)
        _maybe_die(buffer.getvalue(), f)
    return _save(obj, f, *args, **kwargs)


_onnx_export = torch.onnx.export


def onnx_export(model, args, f, *rest, **kwargs):
    with tempfile.TemporaryDirectory() as folder:
        path = osp.join(folder, 'model.onnx')
        _onnx_export(model, args, path, *rest, **kwargs)
        with open(path, 'rb') as file:
            _maybe_die(file.read(), f)
    return _onnx_export(model, args, f, *rest, **kwargs)


LocalBackend.put = put
torch.save = save
torch.onnx.export = onnx_export
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
