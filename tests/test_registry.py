import subprocess
import sys

import pytest

from cait_mm.models import CAITViT


def test_import_does_not_pull_in_task_packages():
    code = ('import sys, cait_mm; '
            'print(sorted(m for m in ("mmseg", "mmdet", "mmpretrain") '
            'if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == '[]'


def test_every_token_reducer_is_registered_by_the_core_alone():
    """A config's ``token_reducer.type`` resolves without importing the
    analysis or model packages first."""
    code = ('import cait_mm.core as core; '
            'print(sorted(core.TOKEN_REDUCERS))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == ("['ATME', 'ATMEAdaptive', 'EViT', 'TPS', 'ToMe', "
                           "'TokenCountBound']")


@pytest.mark.parametrize('scope', ['mmseg', 'mmdet'])
def test_backbone_resolves_from_task_scopes(scope):
    from mmengine.registry import DefaultScope, init_default_scope
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        assert registry.get('cait_mm.CAITViT') is CAITViT
        model = registry.build(
            dict(type='cait_mm.CAITViT', arch='deit-t', out_indices=(11, )))
    assert isinstance(model, CAITViT)
