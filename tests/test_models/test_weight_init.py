"""cait_mm.PretrainedHead: a DeiT file's classifier into mmpretrain heads."""
import pytest
import torch
from mmengine.model import initialize
from mmengine.registry import DefaultScope

from ..fake_in1k import write_timm_deit

pytest.importorskip('mmpretrain')


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """Heads are looked up in mmpretrain's scope, whatever scope an earlier
    test left as the default."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


TIMM = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
            mlp_ratio=2., num_classes=5)


@pytest.mark.parametrize('head', [
    dict(type='VisionTransformerClsHead', num_classes=5, in_channels=32),
    dict(type='LinearClsHead', num_classes=5, in_channels=32),
])
def test_loads_the_deit_head_into_mmpretrain_heads(tmp_path, head):
    from mmpretrain.registry import MODELS
    path = str(tmp_path / 'deit.pth')
    deit = write_timm_deit(path, **TIMM)
    head = MODELS.build(head)
    initialize(head, dict(type='cait_mm.PretrainedHead', checkpoint=path))
    feats = torch.randn(3, 32)
    with torch.no_grad():
        torch.testing.assert_close(head((feats, )), deit.head(feats),
                                   rtol=0, atol=0)


def test_another_number_of_classes_fails_clearly(tmp_path):
    from mmpretrain.registry import MODELS
    path = str(tmp_path / 'deit.pth')
    write_timm_deit(path, **TIMM)
    head = MODELS.build(
        dict(type='VisionTransformerClsHead', num_classes=3, in_channels=32))
    with pytest.raises(RuntimeError, match=r'\(5, 32\).*\(3, 32\)'):
        initialize(head, dict(type='cait_mm.PretrainedHead', checkpoint=path))
