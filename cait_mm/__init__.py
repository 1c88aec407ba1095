"""cait_mm: CAIT and TPS compression of plain ViTs for OpenMMLab dense tasks.

Importing the package registers the backbone, makes MMEngine checkpoints
loadable under ``torch.load(weights_only=True)`` and has MMEngine load local
checkpoints with errors that name the file and what is wrong with it
(:mod:`cait_mm.utils.checkpoint_files`); task-specific modules
(datasets, hooks) are imported lazily by the registries when a config names
them, so mmseg and mmdet are only imported by the task that needs them.
Where mmpretrain's multimodal models would break those imports
(transformers >= 5), they are left out
(:mod:`cait_mm.utils.mmpretrain_compat`).
"""
from .utils.checkpoint_files import register_checkpoint_loader
from .utils.mmpretrain_compat import skip_broken_multimodal
from .utils.safe_globals import allow_mmengine_checkpoint_globals
from .version import __version__

skip_broken_multimodal()
allow_mmengine_checkpoint_globals()
register_checkpoint_loader()

from . import models  # noqa: E402,F401  (registers the backbones)

__all__ = ['__version__']
