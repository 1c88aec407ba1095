"""cait_mm: CAIT and TPS compression of plain ViTs for OpenMMLab dense tasks.

Importing the package registers the backbone and makes MMEngine checkpoints
loadable under ``torch.load(weights_only=True)``; task-specific modules
(datasets, hooks) are imported lazily by the registries when a config names
them, so mmseg and mmdet are only imported by the task that needs them.
"""
from .utils.safe_globals import allow_mmengine_checkpoint_globals
from .version import __version__

allow_mmengine_checkpoint_globals()

from . import models  # noqa: E402,F401  (registers the backbones)

__all__ = ['__version__']
