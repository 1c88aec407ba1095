"""TokenReducerEncoderDecoder: mmseg's EncoderDecoder plus the backbone's
token-reducer losses (TPS's keep-ratio loss with learned scores)."""
import os.path as osp
import subprocess
import sys
import warnings

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from ...conftest import REPO

CONFIG = osp.join(REPO, 'tests/data/configs/demo_tiny.py')
LEARNED = dict(type='TPS', blocks=(1, ), keep_ratio=0.5, score='learned')


def _build(model_type, token_reducer=None):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    cfg = Config.fromfile(CONFIG)
    cfg.model.type = model_type
    cfg.model.backbone.token_reducer = token_reducer
    torch.manual_seed(0)
    return MODELS.build(cfg.model).train()


def _batch(batch_size=2, size=64):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    torch.manual_seed(1)
    samples = []
    for _ in range(batch_size):
        sample = SegDataSample(metainfo=dict(
            img_shape=(size, size), pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 6, (1, size, size)))
        samples.append(sample)
    return torch.randn(batch_size, 3, size, size), samples


def test_learned_tps_ratio_loss_is_added_and_trains_the_predictor():
    model = _build('cait_mm.TokenReducerEncoderDecoder', LEARNED)
    inputs, samples = _batch()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the loss is taken: no warning
        for _ in range(2):
            losses = model.loss(inputs, samples)
    assert {'decode.loss_ce', 'aux.loss_ce', 'loss_tps_ratio'} <= set(losses)
    total, _ = model.parse_losses(losses)
    total.backward()
    predictor = model.backbone.token_reducer.predictors['1']
    assert all(p.grad is not None for p in predictor.parameters())


def test_without_a_learned_reducer_it_is_mmseg_encoder_decoder():
    inputs, samples = _batch()
    ours = _build('cait_mm.TokenReducerEncoderDecoder')
    theirs = _build('EncoderDecoder')
    theirs.load_state_dict(ours.state_dict())
    a, b = ours.loss(inputs, samples), theirs.loss(inputs, samples)
    assert sorted(a) == sorted(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_mmseg_encoder_decoder_warns_that_the_ratio_loss_is_lost():
    model = _build('EncoderDecoder', LEARNED)
    inputs, samples = _batch()
    model.loss(inputs, samples)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model.loss(inputs, samples)
    assert any('keep-ratio loss' in str(w.message) for w in caught)


def test_registered_lazily_without_importing_mmseg_before():
    code = ('import sys, cait_mm\n'
            'from cait_mm.registry import MODELS\n'
            'MODELS.get("CAITViT")\n'
            'assert "mmseg" not in sys.modules\n'
            'cls = MODELS.get("TokenReducerEncoderDecoder")\n'
            'from mmseg.models.segmentors import EncoderDecoder\n'
            'assert issubclass(cls, EncoderDecoder)\n')
    subprocess.run([sys.executable, '-c', code], check=True)


def _predict_samples(meta_list):
    from mmseg.structures import SegDataSample
    return [SegDataSample(metainfo=meta) for meta in meta_list]


def test_post_processing_skips_only_the_resize_to_the_same_size(
        monkeypatch):
    """Logits already at ori_shape are not resized (predictions bit-
    identical to mmseg's); anything else goes through mmseg's path."""
    ours = _build('cait_mm.TokenReducerEncoderDecoder').eval()
    theirs = _build('EncoderDecoder').eval()
    theirs.load_state_dict(ours.state_dict())
    torch.manual_seed(2)
    logits = torch.randn(2, 6, 64, 80)
    same = dict(img_shape=(64, 80), ori_shape=(64, 80),
                padding_size=[0, 0, 0, 0])
    cases = {
        'same size': [same, same],
        'resized': [same, dict(same, ori_shape=(32, 40))],
        'flipped': [same, dict(same, flip=True,
                               flip_direction='horizontal')],
        'padded': [same, dict(same, padding_size=[0, 16, 0, 0],
                              ori_shape=(64, 64))],
    }
    import mmseg.models.segmentors.base as base
    calls = []
    resize = base.resize
    monkeypatch.setattr(base, 'resize',
                        lambda *a, **k: calls.append(1) or resize(*a, **k))
    for name, metas in cases.items():
        calls.clear()
        got = ours.postprocess_result(logits, _predict_samples(metas))
        skipped = not calls
        expected = theirs.postprocess_result(logits, _predict_samples(metas))
        assert skipped == (name == 'same size'), name
        for a, b in zip(got, expected):
            assert torch.equal(a.seg_logits.data, b.seg_logits.data), name
            assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
    # without data samples, mmseg's behaviour
    got = ours.postprocess_result(logits)
    assert torch.equal(got[1].pred_sem_seg.data,
                       logits[1].argmax(0, keepdim=True))
