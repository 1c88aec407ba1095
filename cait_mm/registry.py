"""cait_mm's registries.

Each one is a child of the matching MMEngine root registry with scope
``cait_mm``, so a config in any scope (``mmseg``, ``mmdet``, ``mmpretrain``)
names our modules as ``type='cait_mm.CAITViT'``: MMEngine resolves the scope
prefix through the shared root. ``locations`` are imported lazily on the first
look-up, which keeps ``import cait_mm`` free of mmseg and mmdet.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

SCOPE = 'cait_mm'

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope=SCOPE,
    locations=['cait_mm.models'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope=SCOPE,
    locations=['cait_mm.engine'])
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope=SCOPE, locations=['cait_mm.engine'])
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, scope=SCOPE,
    locations=['cait_mm.datasets'])
