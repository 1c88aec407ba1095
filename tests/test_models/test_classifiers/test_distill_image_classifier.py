"""DistillImageClassifier: a frozen, unsaved teacher; distillation and
token-reducer losses; the student initialised from a DeiT-format file."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper

from ...fake_in1k import TIMM_DEIT, timm_deit_kwargs, write_timm_deit

pytest.importorskip('mmpretrain')

ARCH = dict(embed_dims=32, num_layers=3, num_heads=2, mlp_ratio=2.)
IMG, PATCH, NUM_CLASSES = 32, 8, 5
TIMM = timm_deit_kwargs(ARCH, IMG, NUM_CLASSES, patch_size=PATCH)


def _cfg(ckpt, mode='soft', train_cfg=None, **backbone):
    return dict(
        type='cait_mm.DistillImageClassifier',
        backbone=dict(
            type='cait_mm.CAITViT',
            arch=ARCH,
            img_size=IMG,
            patch_size=PATCH,
            out_type='cls_token',
            final_norm=True,
            pretrained=ckpt,
            **backbone),
        neck=None,
        head=dict(
            type='VisionTransformerClsHead',
            num_classes=NUM_CLASSES,
            in_channels=ARCH['embed_dims'],
            loss=dict(type='CrossEntropyLoss', loss_weight=0.5),
            init_cfg=dict(type='cait_mm.PretrainedHead', checkpoint=ckpt)),
        teacher=dict(
            type='cait_mm.TimmTeacher', model=TIMM_DEIT, checkpoint=ckpt,
            **TIMM),
        distill_loss=dict(
            type='cait_mm.DistillationLoss', mode=mode, loss_weight=0.5),
        train_cfg=train_cfg,
        data_preprocessor=dict(
            type='ClsDataPreprocessor', num_classes=NUM_CLASSES,
            mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
            to_rgb=True))


def _build(cfg, init=True):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg)
    if init:
        model.init_weights()
    return model


def _batch(batch_size=4, seed=0):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, IMG, IMG), generator=g,
                            dtype=torch.uint8) for _ in range(batch_size)]
    samples = [DataSample().set_gt_label(i % NUM_CLASSES)
               for i in range(batch_size)]
    return dict(inputs=images, data_samples=samples)


@pytest.fixture(scope='module')
def deit_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('deit') / 'deit_tiny.pth')
    return path, write_timm_deit(path, **TIMM)


def test_a_student_from_the_deit_file_predicts_what_the_file_does(deit_file):
    path, timm_model = deit_file
    model = _build(_cfg(path)).eval()
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        logits = model(x, mode='tensor')
        torch.testing.assert_close(logits, timm_model(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(model.teacher(x), timm_model(x), rtol=0,
                                   atol=0)
    # identical student and teacher: nothing to distil
    losses = model(x, _batch(2)['data_samples'], mode='loss')
    assert sorted(losses) == ['loss', 'loss_distill']
    assert abs(losses['loss_distill'].item()) < 1e-6


def test_the_teacher_is_frozen_and_never_saved_or_optimised(deit_file):
    path, _ = deit_file
    model = _build(_cfg(path, mode='hard', train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)])))
    teacher = model.teacher
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = model.backbone.cls_token.detach().clone()
    model.train()
    assert model.training and model.backbone.training
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())

    losses = model(**model.data_preprocessor(_batch(), True), mode='loss')
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert model.backbone.cls_token.grad.abs().sum() > 0
    model.zero_grad()

    optim_wrapper = build_optim_wrapper(
        model, dict(optimizer=dict(type='AdamW', lr=1e-2)))
    log_vars = model.train_step(_batch(), optim_wrapper)
    assert {'loss', 'loss_distill'} <= set(log_vars)
    assert all(p.grad is None for p in teacher.parameters())
    assert not torch.equal(model.backbone.cls_token, student_before)
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)

    assert not any('teacher' in k for k in model.state_dict())
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in model.parameters()}
    optimised = [
        p for group in optim_wrapper.optimizer.param_groups
        for p in group['params']
    ]
    assert not teacher_ids & {id(p) for p in optimised}
    assert len(optimised) == len(list(model.parameters()))

    # the teacher follows the model's dtype/device all the same
    model.to(torch.float64)
    assert next(teacher.parameters()).dtype == torch.float64


def test_token_reducer_losses_are_added(deit_file):
    path, _ = deit_file
    model = _build(
        _cfg(path,
             token_reducer=dict(
                 type='TPS', blocks=(1, ), keep_ratio=0.5,
                 score='learned'))).train()
    data = model.data_preprocessor(_batch(), True)
    losses = model(**data, mode='loss')
    assert sorted(losses) == ['loss', 'loss_distill', 'loss_tps_ratio']
    assert losses['loss_tps_ratio'].requires_grad
    sum(losses.values()).backward()
    predictor = model.backbone.token_reducer.predictors['1']
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in predictor.parameters())

    # ATME has no loss of its own
    merging = _build(
        _cfg(path, token_reducer=dict(type='ATME', schedule=[(1, 'h', 0.5)])))
    data = merging.data_preprocessor(_batch(), True)
    assert sorted(merging(**data, mode='loss')) == ['loss', 'loss_distill']


def test_testing_needs_no_teacher_file(deit_file, tmp_path):
    path, _ = deit_file
    cfg = _cfg(path)
    cfg['teacher']['checkpoint'] = str(tmp_path / 'absent.pth')
    model = _build(cfg, init=False).eval()
    predictions = model.val_step(_batch(2))
    assert [p.pred_score.shape for p in predictions] == [(NUM_CLASSES, )] * 2
    with pytest.raises(FileNotFoundError):
        model.init_weights()


def test_teacher_and_loss_go_together(deit_file):
    path, _ = deit_file
    cfg = _cfg(path)
    del cfg['distill_loss']
    with pytest.raises(ValueError, match='set both teacher and distill_loss'):
        _build(cfg, init=False)
    cfg = _cfg(path)
    del cfg['teacher'], cfg['distill_loss']
    model = _build(cfg)
    assert model.teacher is None
    data = model.data_preprocessor(_batch(), True)
    assert sorted(model(**data, mode='loss')) == ['loss']


def test_registered_lazily_without_importing_mmpretrain_before():
    import subprocess
    import sys
    code = (
        'import sys, cait_mm\n'
        'from cait_mm.registry import MODELS\n'
        'MODELS.get("CAITViT")\n'
        'assert "mmpretrain" not in sys.modules\n'
        'cls = MODELS.get("DistillImageClassifier")\n'
        'from mmpretrain.models import ImageClassifier\n'
        'assert issubclass(cls, ImageClassifier)\n')
    subprocess.run([sys.executable, '-c', code], check=True)
