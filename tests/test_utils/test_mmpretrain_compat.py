"""mmpretrain's multimodal models are left out where transformers >= 5
would break ``import mmpretrain`` (and mmdet's and mmseg's registries with
it): the decision from metadata, and the hook that sets the flag as the
module loads, before anything imports from it."""
import importlib
import importlib.metadata
import sys

import pytest

from cait_mm.utils import mmpretrain_compat
from cait_mm.utils.mmpretrain_compat import multimodal_breaks, set_on_import


def _versions(**installed):
    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]
    return version


@pytest.mark.parametrize('mmpretrain, transformers, breaks', [
    ('1.2.0', '5.17.0', True),
    ('1.2.0', '5.0.0.dev0', True),
    ('1.2.0', '4.57.1', False),
    ('1.3.0', '5.17.0', False),
    ('1.2.0', None, False),
    (None, '5.17.0', False),
])
def test_multimodal_breaks_from_installed_versions(mmpretrain, transformers,
                                                   breaks):
    installed = {k: v for k, v in (('mmpretrain', mmpretrain),
                                   ('transformers', transformers)) if v}
    assert multimodal_breaks(_versions(**installed)) is breaks


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A package whose ``dep`` module sets FLAG and whose ``user`` module
    reads it at import, as mmpretrain.models.multimodal reads
    WITH_MULTIMODAL."""
    pkg = tmp_path / 'compat_fake_pkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'dep.py').write_text('FLAG = True\nOTHER = 1\n')
    (pkg / 'user.py').write_text('from .dep import FLAG\nSEEN = FLAG\n')
    (pkg / 'sibling.py').write_text('FLAG = True\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    meta_path = list(sys.meta_path)
    yield 'compat_fake_pkg'
    sys.meta_path[:] = meta_path
    for name in [m for m in sys.modules if m.startswith('compat_fake_pkg')]:
        del sys.modules[name]


def test_the_flag_is_set_before_an_importer_reads_it(fake_package):
    assert set_on_import(f'{fake_package}.dep', 'FLAG', False) == 'hooked'
    user = importlib.import_module(f'{fake_package}.user')
    assert user.SEEN is False
    dep = sys.modules[f'{fake_package}.dep']
    assert dep.FLAG is False and dep.OTHER == 1  # the rest of it as written
    # other modules, of the same package too, load untouched
    assert importlib.import_module(f'{fake_package}.sibling').FLAG is True
    # asking twice adds no second finder
    set_on_import(f'{fake_package}.dep', 'FLAG', False)
    assert sum(isinstance(f, mmpretrain_compat._SetAfterLoad)
               and f.name == f'{fake_package}.dep'
               for f in sys.meta_path) == 1


def test_an_already_loaded_module_is_set_at_once(fake_package):
    dep = importlib.import_module(f'{fake_package}.dep')
    assert set_on_import(f'{fake_package}.dep', 'FLAG', False) == 'set'
    assert dep.FLAG is False


def test_nothing_is_hooked_where_nothing_breaks(monkeypatch):
    monkeypatch.setattr(mmpretrain_compat, 'multimodal_breaks', lambda: False)
    before = list(sys.meta_path)
    assert mmpretrain_compat.skip_broken_multimodal() is False
    assert sys.meta_path == before


def test_where_it_breaks_mmpretrain_is_told_as_it_loads(monkeypatch):
    calls = []
    monkeypatch.setattr(mmpretrain_compat, 'multimodal_breaks', lambda: True)
    monkeypatch.setattr(mmpretrain_compat, 'set_on_import',
                        lambda *args: calls.append(args))
    assert mmpretrain_compat.skip_broken_multimodal() is True
    assert calls == [('mmpretrain.utils.dependency', 'WITH_MULTIMODAL',
                      False)]
