"""mmseg's and mmpretrain's checkpoints through the tools: evaluated by
tools/test.py as they are, and written as plain state dicts in CAITViT's
layout by tools/model_converters/, which load with the file's outputs."""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from cait_mm.engine.strict_load import load_model_checkpoint
from cait_mm.models import CAITViT
from cait_mm.models.backbones.vit_layouts import (MMSEG, TIMM,
                                                  convert_checkpoint_file,
                                                  detect_layout)
from cait_mm.utils.checkpoint_files import load_local_checkpoint
from ..conftest import REPO, run_tool
from ..openmmlab_models import (MIRRORS, VIT_ARCH, assert_same_outputs,
                                mmpretrain_vit, randomize, save,
                                small_segmentor)


def test_mmseg_segmentor_converted_gives_its_outputs(tmp_path):
    theirs, ours = MIRRORS[1]  # ViT-B MLN: backbone, neck and heads
    ref = randomize(small_segmentor(theirs, 'mmseg'))
    save(ref.state_dict(), tmp_path / 'mmseg.pth')
    counts = convert_checkpoint_file(str(tmp_path / 'mmseg.pth'),
                                     str(tmp_path / 'out' / 'cait.pth'),
                                     MMSEG)
    state = load_local_checkpoint(str(tmp_path / 'out' / 'cait.pth'))
    backbone = {k[len('backbone.'):]: v for k, v in state.items()
                if k.startswith('backbone.')}
    assert detect_layout(backbone) == TIMM
    assert counts == dict(converted=len(backbone),
                          kept=len(state) - len(backbone))
    assert not any(k.startswith('neck.') for k in backbone)
    model = small_segmentor(ours)
    load_model_checkpoint(model, state, 'cait.pth')
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'),
                                   ref(x, mode='tensor'), rtol=0, atol=1e-5)


def test_mmpretrain2cait_writes_a_state_dict_caitvit_loads(tmp_path):
    ref = mmpretrain_vit(out_type='featmap', out_indices=(0, 1))
    src = save({f'backbone.{k}': v for k, v in ref.state_dict().items()},
               tmp_path / 'deit.pth')
    dst = tmp_path / 'deit_cait.pth'
    proc = run_tool(['tools/model_converters/mmpretrain2cait.py', src,
                     str(dst)])
    assert f'{dst}: 30 ViT tensors' in proc.stdout
    model = CAITViT(arch=VIT_ARCH, img_size=64, out_indices=(0, 1),
                    final_norm=True,
                    init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                                  prefix='backbone.'))
    model.init_weights()
    assert_same_outputs(ref, model.eval())

    proc = run_tool(['tools/model_converters/mmseg2cait.py', src,
                     str(tmp_path / 'wrong.pth')], check=False)
    assert proc.returncode != 0
    assert "in the layout of mmpretrain's VisionTransformer" in proc.stderr
    assert 'mmpretrain2cait.py' in proc.stderr
    assert not (tmp_path / 'wrong.pth').exists()


def test_tools_test_evaluates_an_mmseg_segmentor_checkpoint(
        tmp_path, demo_data):
    """The tests' demo config, trained as mmseg would (mmseg's ViT in
    place of CAITViT): tools/test.py loads it through the runner."""
    config = osp.join(REPO, 'tests/data/configs/demo_tiny.py')
    cfg = Config.fromfile(config)
    arch = cfg.model.backbone.arch
    cfg.model.backbone = dict(
        type='VisionTransformer', img_size=(64, 64),
        embed_dims=arch.embed_dims, num_layers=arch.num_layers,
        num_heads=arch.num_heads, mlp_ratio=int(arch.mlp_ratio),
        out_indices=(0, 1, 2, 3), norm_cfg=dict(type='LN', eps=1e-6))
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    segmentor = MODELS.build(cfg.model)
    segmentor.eval()
    path = save(randomize(segmentor).state_dict(), tmp_path / 'mmseg.pth')
    proc = run_tool([
        'tools/test.py', config, path, '--work-dir', str(tmp_path / 'test'),
        '--cfg-options'
    ] + [
        f'{loader}.dataset.data_root={demo_data}'
        for loader in ('val_dataloader', 'test_dataloader')
    ])
    log = proc.stdout + proc.stderr
    # loaded strictly (a key that did not fit would have failed the run)
    assert f'Load checkpoint from {path} (strict)' in log
    assert 'mIoU' in log
