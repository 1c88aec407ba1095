"""tools/analysis_tools/reducer_agreement.py on a tiny random timm/DeiT
classifier saved here and a few generated images (no downloads)."""
import importlib.util
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from ..conftest import REPO, run_tool

TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'reducer_agreement.py')


def _tool():
    spec = importlib.util.spec_from_file_location('reducer_agreement', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def timm_deit(tmp_path):
    """A 12-block, 48-wide timm ViT classifier (96x96, 10 classes), saved
    as DeiT files are (``{'model': state}``); the timm model as well."""
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    model = VisionTransformer(img_size=96, patch_size=16, embed_dim=48,
                              depth=12, num_heads=3, mlp_ratio=2.,
                              num_classes=10).eval()
    path = tmp_path / 'deit_tiny_random.pth'
    torch.save({'model': model.state_dict()}, path)
    return str(path), model


@pytest.fixture
def images(tmp_path):
    """Six images of shapes on gradients, different sizes."""
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        h, w = 80 + 16 * i, 120 - 8 * i
        img = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * \
            rng.uniform(0.2, 1, 3)[None, None]
        img = np.broadcast_to(img, (h, w, 3)).copy()
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[y:y + h // 3, x:x + w // 3] = rng.uniform(0, 255, 3)
        cv2.imwrite(str(folder / f'{i}.png'), img.astype(np.uint8))
    (folder / 'notes.txt').write_text('not an image')
    return str(folder)


def test_the_timm_file_classifies_as_timm_does(timm_deit, images):
    tool = _tool()
    path, reference = timm_deit
    model = tool.TimmClassifier(path, num_heads=3).eval()
    names, rgb = tool.load_images(images, 96)
    assert names == [f'{i}.png' for i in range(6)]
    x = model.normalise(rgb)
    with torch.no_grad():
        # 12 blocks of float32, fused attention on one side
        torch.testing.assert_close(model(x), reference(x), rtol=1e-3,
                                   atol=1e-3)


def test_rows_at_equal_block_flops(timm_deit, images):
    tool = _tool()
    model = tool.TimmClassifier(timm_deit[0], num_heads=3).eval()
    _, rgb = tool.load_images(images, 96)
    reducers = ['ATME', 'ATMEAdaptive', 'ToMe', 'EViT']
    rows = tool.run(model, model.normalise(rgb), [0.5, 0.35], reducers)
    assert rows[0]['reducer'] == 'dense'
    assert rows[0]['agreement'] == 100. and rows[0]['kl'] == 0.
    assert [(r['target'], r['reducer']) for r in rows[1:]] == [
        (t, k) for t in (0.5, 0.35) for k in reducers]
    for row in rows[1:]:
        assert abs(row['block_flops'] - row['target']) <= 0.1 * row[
            'target'], row
        assert 0 <= row['agreement'] <= 100 and row['kl'] >= 0
        assert row['config']['type'] == row['reducer']
    # the reduced models differ from the dense one, and the dense model
    # is left as it was
    assert any(r['kl'] > 0 for r in rows[1:])
    assert model.backbone.token_reducer is None


def test_command_line_writes_the_table(timm_deit, images, tmp_path):
    out = tmp_path / 'out'
    proc = run_tool([TOOL, timm_deit[0], images, '--flops', '0.5',
                     '--reducers', 'ATMEAdaptive', 'ToMe', '--size', '96',
                     '--num-heads', '3', '--limit', '4', '--out-dir',
                     str(out)])
    assert '| ATMEAdaptive | 0.50 |' in proc.stdout
    result = json.load(open(out / 'agreement.json'))
    assert result['images'] == ['0.png', '1.png', '2.png', '3.png']
    assert [r['reducer'] for r in result['rows']] == [
        'dense', 'ATMEAdaptive', 'ToMe']
    # header, separator, a row each
    assert (out / 'agreement.md').read_text().count('\n| ') == 5


def test_the_imagenet_stage_config_with_its_checkpoint(images, tmp_path):
    """The ImageNet stage's classifier (config + MMEngine checkpoint):
    loaded, normalised by its data preprocessor, reducers swapped in."""
    from mmengine.runner import save_checkpoint

    from cait_mm.analysis.model_from_config import build_model
    tool = _tool()
    config = osp.join(REPO, 'configs/imagenet/deit-t_in1k.py')
    torch.manual_seed(0)
    trained = build_model(config)
    for p in trained.parameters():
        p.data.normal_(0, 0.05)
    ckpt = str(tmp_path / 'deit_t_in1k.pth')
    save_checkpoint(trained.state_dict(), ckpt)
    model = tool.ConfigClassifier(config, ckpt).eval()
    _, rgb = tool.load_images(images, 224, limit=2)
    x = model.normalise(rgb)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained(x, mode='tensor'))
    rows = tool.run(model, x, [0.5], ['ATMEAdaptive'])
    assert rows[1]['config']['type'] == 'ATMEAdaptive'
    assert rows[1]['block_flops'] <= 0.5
