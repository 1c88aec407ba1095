"""mmpretrain 1.2 next to transformers >= 5.

mmpretrain 1.2.0 imports its multimodal models (BLIP, CLIP, ...) whenever
transformers >= 4.28 is installed. Under transformers 5 they subclass a
name that is no longer there (``TypeError: NoneType takes no arguments``),
so ``import mmpretrain`` fails, and with it mmdet's model registry (its
ReID preprocessor imports mmpretrain) and mmseg's (its Mask2Former head
imports mmdet's): no UperNet config would build. No cait_mm model uses
them, so where that would happen mmpretrain is told, as it loads, that
they are unavailable; its own placeholders then say so if a config names
one.
"""
import importlib.abc
import importlib.metadata
import sys
from typing import Any, Callable

from packaging.version import Version

DEPENDENCY = 'mmpretrain.utils.dependency'


def multimodal_breaks(
        version: Callable[[str], str] = importlib.metadata.version) -> bool:
    """Whether mmpretrain (<= 1.2) would import its multimodal models
    under transformers >= 5 (read from the installed metadata: nothing is
    imported)."""
    try:
        return (Version(version('mmpretrain')).release[:2] <= (1, 2)
                and Version(version('transformers')).major >= 5)
    except importlib.metadata.PackageNotFoundError:
        return False


class _SetAfterLoad(importlib.abc.MetaPathFinder):
    """Finds ``name`` with the other finders and sets ``attribute`` on the
    module right after its code ran, before anything imports from it."""

    def __init__(self, name: str, attribute: str, value: Any):
        self.name, self.attribute, self.value = name, attribute, value

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_set(module):
            exec_module(module)
            setattr(module, self.attribute, self.value)

        # this spec's loader only: the class's other modules are untouched
        loader.exec_module = exec_and_set
        return spec


def set_on_import(name: str, attribute: str, value: Any) -> str:
    """Have module ``name`` hold ``attribute = value`` from the moment it
    has loaded (now, if it already has). Returns how: ``'set'`` or
    ``'hooked'``."""
    module = sys.modules.get(name)
    if module is not None:
        setattr(module, attribute, value)
        return 'set'
    if not any(isinstance(f, _SetAfterLoad) and f.name == name
               for f in sys.meta_path):
        sys.meta_path.insert(0, _SetAfterLoad(name, attribute, value))
    return 'hooked'


def skip_broken_multimodal() -> bool:
    """Leave mmpretrain's multimodal models out where they would not
    import (:func:`multimodal_breaks`). Returns whether it did."""
    if not multimodal_breaks():
        return False
    set_on_import(DEPENDENCY, 'WITH_MULTIMODAL', False)
    return True
