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
