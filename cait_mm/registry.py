"""cait_mm's registries.

Each one is a child of the matching MMEngine root registry with scope
``cait_mm``, so a config in any scope (``mmseg``, ``mmdet``, ``mmpretrain``)
names our modules as ``type='cait_mm.CAITViT'``: MMEngine resolves the scope
prefix through the shared root. ``locations`` are imported lazily on the first
look-up, which keeps ``import cait_mm`` free of mmseg, mmdet and mmpretrain.

Modules that subclass a task package's classes (the ImageNet classifier is
mmpretrain's ``ImageClassifier``, the Mask R-CNN is mmdet's ``MaskRCNN``,
the segmentor is mmseg's ``EncoderDecoder``)
cannot sit in ``locations``: a backbone look-up from an mmseg config would
import mmpretrain or mmdet, or fail where it is not installed. They are
listed in ``lazy`` instead and imported by the first look-up of a name they
define.
"""
from importlib import import_module
from typing import Dict, Optional

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import \
    WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

SCOPE = 'cait_mm'


class LazyRegistry(Registry):
    """A :class:`Registry` that imports some modules only on demand.

    Args:
        lazy (dict, optional): ``{name: module}``: ``module`` registers
            ``name`` and is imported the first time ``name`` is looked up.
        *args, **kwargs: :class:`Registry`'s.
    """

    def __init__(self, *args, lazy: Optional[Dict[str, str]] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy or {})

    def get(self, key: str):
        scope, name = self.split_scope_key(key)
        if scope in (None, self.scope) and name in self._lazy and \
                name not in self._module_dict:
            import_module(self._lazy[name])
        return super().get(key)


MODELS = LazyRegistry(
    'model', parent=MMENGINE_MODELS, scope=SCOPE,
    locations=['cait_mm.models'],
    lazy={
        'CAITFCNMaskHead': 'cait_mm.models.det_heads',
        'CAITRPNHead': 'cait_mm.models.det_heads',
        'CAITShared2FCBBoxHead': 'cait_mm.models.det_heads',
        'CAITUPerHead': 'cait_mm.models.decode_heads',
        'DistillImageClassifier': 'cait_mm.models.classifiers',
        'PadAwareMaskRCNN': 'cait_mm.models.detectors',
        'TokenReducerEncoderDecoder': 'cait_mm.models.segmentors',
    })
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope=SCOPE,
    locations=['cait_mm.engine'])
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope=SCOPE, locations=['cait_mm.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope=SCOPE,
    locations=['cait_mm.engine'])
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, scope=SCOPE,
    locations=['cait_mm.datasets'])
TRANSFORMS = Registry(
    'transform', parent=MMENGINE_TRANSFORMS, scope=SCOPE,
    locations=['cait_mm.transforms'])
WEIGHT_INITIALIZERS = Registry(
    'weight initializer', parent=MMENGINE_WEIGHT_INITIALIZERS, scope=SCOPE,
    locations=['cait_mm.models'])
