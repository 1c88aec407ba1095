"""TimmTeacher: a frozen timm classifier read strictly from a DeiT file."""
import pytest
import torch

from cait_mm.models import TimmTeacher
from ...fake_in1k import TIMM_DEIT, write_timm_deit

TIMM = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
            mlp_ratio=2., num_classes=5)


@pytest.mark.parametrize('layout', ['model', 'state_dict', 'bare'])
def test_loads_deit_and_mmengine_layouts(tmp_path, layout):
    path = str(tmp_path / 'deit.pth')
    reference = write_timm_deit(path, **TIMM)
    if layout != 'model':
        state = torch.load(path, weights_only=True)['model']
        torch.save(state if layout == 'bare' else dict(state_dict=state),
                   path)
    teacher = TimmTeacher(TIMM_DEIT, path, **TIMM)
    teacher.init_weights()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(teacher(x), reference(x), rtol=0, atol=0)
    assert teacher.num_classes == 5


def test_is_frozen(tmp_path):
    path = str(tmp_path / 'deit.pth')
    write_timm_deit(path, **TIMM)
    teacher = TimmTeacher(TIMM_DEIT, path, **TIMM)
    teacher.init_weights()
    assert not teacher.training
    teacher.train()
    assert not teacher.training and not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    assert not teacher(x).requires_grad


def test_a_file_of_another_architecture_fails_clearly(tmp_path):
    path = str(tmp_path / 'deit.pth')
    write_timm_deit(path, **dict(TIMM, depth=1))
    teacher = TimmTeacher(TIMM_DEIT, path, **TIMM)
    message = r'(?s)Teacher checkpoint.*missing keys.*blocks\.1\.'
    with pytest.raises(RuntimeError, match=message):
        teacher.init_weights()
