"""CAITViT on CUDA: the same results as on the CPU, and AMP training.

Skipped on machines without a GPU (CI); run them on one with
``pytest tests/test_models/test_backbones/test_cait_vit_cuda.py``.
"""
import copy

import pytest
import torch

from cait_mm.models import CAITViT

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='needs a CUDA device')

REDUCERS = {
    'dense': {},
    'atme-token': dict(token_reducer=dict(type='ATME', schedule='deit-s')),
    'atme-line': dict(
        token_reducer=dict(type='ATME', schedule='deit-s',
                           granularity='line')),
    'tps-attn': dict(token_reducer=dict(type='TPS', keep_ratio=0.7)),
    # the bias as an aligned mask (no FlashAttention), not folded
    'atme-mask': dict(token_reducer=dict(type='ATME', schedule='deit-s'),
                      attn_bias_mode='mask'),
}
GROUPS = dict(groups=('qk', 'v', 'mlp'))


def _model(**kwargs):
    torch.manual_seed(0)
    model = CAITViT(arch='deit-s', img_size=224, out_indices=(2, 5, 8, 11),
                    drop_path_rate=0., **kwargs)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('name', sorted(REDUCERS))
def test_cuda_matches_cpu(name):
    model = _model(**REDUCERS[name])
    x = torch.randn(2, 3, 320, 480)
    with torch.no_grad():
        expected = model(x)
        got = copy.deepcopy(model).cuda()(x.cuda())
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize('name', ['atme-token', 'atme-mask'])
def test_cuda_padded_batch_matches_single_images(name):
    model = _model(**REDUCERS[name]).cuda()
    x = torch.randn(2, 3, 256, 320, device='cuda')
    x[1, :, 192:] = 0
    x[1, :, :, 224:] = 0
    with torch.no_grad():
        batch = model(x, valid_sizes=[(256, 320), (192, 224)])
        alone = model(x[1:, :, :192, :224])
    for a, b in zip(batch, alone):
        torch.testing.assert_close(a[1:, :, :12, :14], b, rtol=1e-3,
                                   atol=1e-3)


def test_amp_training_step_with_atme_and_cdcp():
    model = _model(channel_prune=GROUPS,
                   **REDUCERS['atme-token']).cuda().train()
    for entries in model.channel_groups().values():
        for _, group in entries:
            group.select(0.5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler('cuda')
    x = torch.randn(8, 3, 224, 224, device='cuda')
    for _ in range(3):
        with torch.autocast('cuda', dtype=torch.float16):
            loss = sum(f.float().pow(2).mean() for f in model(x))
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        assert torch.isfinite(loss)
    group = model.blocks[4].attn.qk_compactor
    assert group.weight.grad[:, group.pruned].abs().max() == 0
    assert torch.isfinite(group.weight.grad).all()
    # the masked (eval) model and its export agree on the GPU too
    model.eval()
    with torch.no_grad():
        masked = model(x[:2])
        exported = model.compact()(x[:2])
    for a, b in zip(exported, masked):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
