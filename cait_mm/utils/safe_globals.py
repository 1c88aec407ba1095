"""Let ``torch.load(weights_only=True)`` read MMEngine checkpoints.

Since torch 2.6, ``torch.load`` only unpickles tensors and plain containers
unless told otherwise. MMEngine 0.10.7 calls ``torch.load`` without
``weights_only``, and its checkpoints carry a ``message_hub`` with
``HistoryBuffer`` objects holding numpy arrays and scalars, so ``--resume``
fails. Rather than turn the check off, allow exactly those data types: none of
them runs code when unpickled.

One more thing is needed: a ``HistoryBuffer`` pickles its statistic methods
(``min``, ``max``, ``current``, ``mean``) as ``getattr(HistoryBuffer, name)``.
Allowing ``getattr`` itself would reach any attribute of any allowed class,
so the checkpoint's ``getattr`` is served by :func:`_history_buffer_method`,
which answers for those methods only.
"""
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# Numeric dtypes that logged scalars and metric values can have.
_NUMPY_SCALAR_TYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64,
                       np.uint8, np.uint16, np.uint32, np.uint64, np.float16,
                       np.float32, np.float64)

_DEFAULT_STATISTICS = {'min', 'max', 'current', 'mean'}


def _numpy_multiarray():
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _history_buffer_method(owner, name: str):
    """``getattr`` restricted to ``HistoryBuffer``'s statistic methods."""
    # The defaults are registered on the first HistoryBuffer built, which may
    # not have happened yet in this process.
    allowed = _DEFAULT_STATISTICS | set(HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Refusing getattr({owner!r}, {name!r}) in a checkpoint: only '
        'HistoryBuffer statistic methods are allowed')


def mmengine_checkpoint_globals() -> list:
    """The non-tensor types found in MMEngine training checkpoints."""
    multiarray = _numpy_multiarray()
    dtype_classes = [type(np.dtype(t)) for t in _NUMPY_SCALAR_TYPES]
    return [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        multiarray._reconstruct,
        multiarray.scalar,
        *dtype_classes,
        (_history_buffer_method, 'builtins.getattr'),
    ]


def allow_mmengine_checkpoint_globals() -> None:
    """Add :func:`mmengine_checkpoint_globals` to torch's allow-list."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
