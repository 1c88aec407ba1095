"""Models registered in cait_mm's MODELS registry.

Everything imported here needs only MMEngine, mmcv, timm and torch. The
ImageNet classifier (:mod:`.classifiers`) and the Mask R-CNN
(:mod:`.detectors`) subclass mmpretrain's and mmdet's and are imported by
the registry on the first look-up of their names.
"""
from .backbones import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .losses import DistillationLoss  # noqa: F401
from .necks import *  # noqa: F401,F403
from .teachers import TimmTeacher  # noqa: F401
from .weight_init import PretrainedHead  # noqa: F401
