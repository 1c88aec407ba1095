"""ONNX export: every backbone variant and a whole UperNet (tensor forward)
run in ONNX Runtime with PyTorch's outputs; tools/deployment/export_onnx.py end
to end
on a checkpoint, and ONNX Runtime rows in the benchmark."""
import os.path as osp

import pytest
import torch

from cait_mm.analysis.benchmark import Entry, benchmark
from cait_mm.analysis.model_from_config import build_model
from cait_mm.deploy import (PartForward, check_onnx, export_onnx, onnx_session,
                            run_onnx)
from ..backbone_variants import MERGE, VARIANTS, backbone
from ..conftest import REPO, run_tool

SEG = osp.join(REPO, 'tests/data/configs/demo_tiny.py')
ATME = {
    'model.backbone.token_reducer.type': 'ATME',
    'model.backbone.token_reducer.schedule': MERGE
}


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_backbones_run_in_onnx_runtime_as_in_pytorch(name, tmp_path):
    model = backbone(name)
    x = torch.randn(2, 3, 64, 80)
    path = export_onnx(model, x, str(tmp_path / 'backbone.onnx'))
    session = onnx_session(path)
    assert check_onnx(model, session, x) <= 1e-4
    # a fixed-size export: the reduced sizes were traced for this input
    outputs = run_onnx(session, x)
    assert [o.shape for o in outputs] == [(2, 32, 4, 5)] * 2


def test_atme_with_the_triton_merge_exports_its_reference(tmp_path):
    """ONNX has no Triton: the export runs the reference merge, which the
    model keeps using afterwards only if it asked for it."""
    model = backbone('atme-token')
    model.token_reducer.kernel = 'triton'
    x = torch.randn(1, 3, 64, 80)
    session = onnx_session(export_onnx(model, x, str(tmp_path / 'b.onnx')))
    assert model.token_reducer.kernel == 'triton'
    model.token_reducer.kernel = 'torch'
    assert check_onnx(model, session, x) <= 1e-4


def test_a_whole_upernet_with_atme_runs_in_onnx_runtime(tmp_path):
    model = PartForward(build_model(SEG, ATME), 'network')
    x = torch.randn(1, 3, 64, 96)
    session = onnx_session(export_onnx(model, x, str(tmp_path / 'm.onnx')))
    assert check_onnx(model, session, x) <= 1e-4
    with pytest.raises(ValueError, match="export part='features'"):
        PartForward(build_model(osp.join(
            REPO, 'tests/data/configs/mask_rcnn_demo_tiny.py')), 'network')


def test_export_tool_reads_a_checkpoint_and_checks_the_export(tmp_path):
    model = build_model(SEG, ATME)
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'ckpt.pth')
    out = tmp_path / 'onnx' / 'model.onnx'
    options = ['model.backbone.token_reducer.type=ATME',
               'model.backbone.token_reducer.schedule=[(0,h,0.5),(1,v,0.5)]']
    proc = run_tool(['tools/deployment/export_onnx.py', SEG,
                     str(tmp_path / 'ckpt.pth'), str(out), '--shape', '64',
                     '96', '--cfg-options', *options])
    assert out.is_file() and 'max abs difference' in proc.stdout
    # the weights are the checkpoint's
    x = torch.randn(1, 3, 64, 96)
    expected = model(x, mode='tensor')
    torch.testing.assert_close(
        torch.from_numpy(run_onnx(onnx_session(str(out)), x)[0]), expected,
        rtol=1e-4, atol=1e-4)
    # a checkpoint that does not fit fails before exporting
    torch.save({'state_dict': {'backbone.nothing': torch.zeros(1)}},
               tmp_path / 'wrong.pth')
    proc = run_tool(['tools/deployment/export_onnx.py', SEG,
                     str(tmp_path / 'wrong.pth'), str(tmp_path / 'wrong.onnx'),
                     '--shape', '64', '64'], check=False)
    assert proc.returncode != 0
    # its backbone is in no ViT layout: refused with the keys found
    assert 'not in a ViT layout' in proc.stderr
    assert 'the keys found: nothing' in proc.stderr
    assert not (tmp_path / 'wrong.onnx').exists()


def test_benchmark_times_onnx_runtime_rows():
    results = benchmark([Entry(SEG), Entry(SEG, ATME)], (64, 96),
                        part='network', warmup=1, repeats=1, onnx=True,
                        log=lambda _: None)
    dense, merged = results
    assert merged.flops < dense.flops and merged.images_per_s > 0
    with pytest.raises(ValueError, match='onnx times part'):
        benchmark([Entry(SEG)], (64, 96), part='model', onnx=True)


def test_benchmark_sessions_sleep_between_runs(tmp_path, monkeypatch):
    """Rows run in turn: a session whose threads spin-wait after its run
    (ONNX Runtime's default) takes the cores from the next row's."""
    import cait_mm.deploy
    key = 'session.intra_op.allow_spinning'
    path = export_onnx(backbone('dense'), torch.randn(1, 3, 64, 80),
                       str(tmp_path / 'b.onnx'))
    options = onnx_session(path, spinning=False).get_session_options()
    assert options.get_session_config_entry(key) == '0'
    with pytest.raises(RuntimeError, match='does not have'):
        onnx_session(path).get_session_options().get_session_config_entry(
            key)  # ONNX Runtime's default: spinning
    made = []

    def recorded(*args, **kwargs):
        made.append(onnx_session(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(cait_mm.deploy, 'onnx_session', recorded)
    benchmark([Entry(SEG), Entry(SEG, ATME)], (64, 96), part='backbone',
              warmup=1, repeats=1, onnx=True, log=lambda _: None)
    assert len(made) == 2
    for session in made:
        assert session.get_session_options().get_session_config_entry(
            key) == '0'
