import pytest
import timm
import torch

from cait_mm.models import CAITViT

TINY = dict(embed_dims=32, num_layers=4, num_heads=2, mlp_ratio=2.)


@pytest.fixture(scope='module')
def timm_deit_s(tmp_path_factory):
    """A randomly initialised timm DeiT-S saved like the official file."""
    torch.manual_seed(0)
    model = timm.create_model('deit_small_patch16_224', pretrained=False)
    path = tmp_path_factory.mktemp('ckpt') / 'deit_small_patch16_224.pth'
    torch.save({'model': model.state_dict()}, path)
    return model.eval(), str(path)


@pytest.mark.parametrize('size, grid', [((224, 224), (14, 14)),
                                        ((512, 512), (32, 32)),
                                        ((256, 512), (16, 32)),
                                        ((96, 160), (6, 10)),
                                        ((100, 130), (7, 9))])
def test_output_shapes_follow_the_input(size, grid):
    model = CAITViT(arch=TINY, img_size=64, out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *size))
    assert len(outs) == 2
    for out in outs:
        assert out.shape == (2, 32, *grid)


def test_presets():
    expected = {'deit-t': (192, 3), 'deit-s': (384, 6), 'deit-b': (768, 12)}
    for arch, (dims, heads) in expected.items():
        model = CAITViT(arch=arch)
        assert model.embed_dims == dims
        assert model.blocks[0].attn.num_heads == heads
        assert len(model.blocks) == 12


def test_features_equal_timm_deit(timm_deit_s):
    reference, path = timm_deit_s
    model = CAITViT(
        arch='deit-s', out_indices=(2, 5, 8, 11), final_norm=True,
        pretrained=path).eval()
    model.init_weights()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = model(x)
        ref = reference.forward_intermediates(
            x, indices=[2, 5, 8], norm=False, output_fmt='NCHW',
            intermediates_only=True)
        last = reference.forward_features(x)[:, 1:]
    for a, b in zip(ours[:3], ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        ours[3], last.transpose(1, 2).reshape(2, 384, 14, 14), rtol=0,
        atol=1e-5)


def test_loading_resizes_position_embeddings(timm_deit_s):
    reference, path = timm_deit_s
    model = CAITViT(arch='deit-s', img_size=512, pretrained=path)
    model.init_weights()
    assert model.pos_embed.shape == (1, 1 + 32 * 32, 384)
    torch.testing.assert_close(model.pos_embed[:, 0],
                               reference.pos_embed[:, 0])
    torch.testing.assert_close(model.blocks[3].mlp.fc1.weight,
                               reference.blocks[3].mlp.fc1.weight)


def test_distilled_deit_checkpoint_drops_the_distillation_token(tmp_path):
    distilled = timm.create_model(
        'deit_tiny_distilled_patch16_224', pretrained=False)
    path = tmp_path / 'deit_tiny_distilled.pth'
    torch.save({'model': distilled.state_dict()}, path)
    model = CAITViT(arch='deit-t', pretrained=str(path))
    model.init_weights()
    torch.testing.assert_close(model.pos_embed[:, 1:],
                               distilled.pos_embed[:, 2:])


def test_openmmlab_checkpoint_with_prefix(tmp_path):
    source = CAITViT(arch=TINY, out_indices=(3, ))
    source.init_weights()
    path = tmp_path / 'segmentor.pth'
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in source.state_dict().items()}},
               path)
    model = CAITViT(
        arch=TINY,
        out_indices=(3, ),
        init_cfg=dict(type='Pretrained', checkpoint=str(path),
                      prefix='backbone.'))
    model.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], source(x)[0])


def test_checkpoint_that_does_not_fit_lists_keys(timm_deit_s):
    _, path = timm_deit_s
    model = CAITViT(arch='deit-t', pretrained=path)
    with pytest.raises(RuntimeError) as err:
        model.init_weights()
    assert 'shape mismatch' in str(err.value)
    assert 'blocks.0.attn.qkv.weight' in str(err.value)

    shallow = CAITViT(arch=dict(TINY, embed_dims=384, num_heads=6),
                      pretrained=path)
    with pytest.raises(RuntimeError, match='unexpected keys.*blocks.11'):
        shallow.init_weights()


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="valid archs: .*'deit-b'"):
        CAITViT(arch='deit-xl')
    with pytest.raises(ValueError, match="exactly the keys"):
        CAITViT(arch=dict(embed_dims=32, num_layers=2))
    with pytest.raises(IndexError, match='out_indices entry 12'):
        CAITViT(arch='deit-t', out_indices=(2, 12))
    strict = CAITViT(arch=TINY, pad_to_patch=False)
    with pytest.raises(ValueError, match='not a multiple of the patch size'):
        strict(torch.randn(1, 3, 64, 70))


def test_negative_out_indices_and_cls_token_output():
    model = CAITViT(arch=TINY, out_indices=-1, output_cls_token=True)
    (feat, cls), = model(torch.randn(2, 3, 32, 48))
    assert feat.shape == (2, 32, 2, 3) and cls.shape == (2, 32)
    no_cls = CAITViT(arch=TINY, out_indices=(0, ), with_cls_token=False)
    assert no_cls(torch.randn(1, 3, 32, 32))[0].shape == (1, 32, 2, 2)


def test_padded_batch_gives_each_image_its_own_features():
    torch.manual_seed(0)
    model = CAITViT(arch=TINY, img_size=64, out_indices=(1, 3)).eval()
    sizes = [(70, 100), (96, 128), (40, 60)]
    images = [torch.randn(3, h, w) for h, w in sizes]
    batch = torch.zeros(3, 3, 96, 128)
    for i, img in enumerate(images):
        batch[i, :, :img.shape[1], :img.shape[2]] = img
    with torch.no_grad():
        batched = model(batch, valid_sizes=sizes)
        for i, img in enumerate(images):
            alone = model(img[None])
            for b, a in zip(batched, alone):
                h, w = a.shape[-2:]
                torch.testing.assert_close(
                    b[i:i + 1, :, :h, :w], a, rtol=1e-5, atol=1e-5)
                assert b[i, :, h:].abs().sum() == 0
                assert b[i, :, :, w:].abs().sum() == 0
        # unpadded valid sizes change nothing
        full = model(batch, valid_sizes=[(96, 128)] * 3)
        for f, p in zip(full, model(batch)):
            torch.testing.assert_close(f, p, rtol=0, atol=0)
    with pytest.raises(ValueError, match='exceed the input grid'):
        model(batch, valid_sizes=[(97, 128)] * 3)


MERGE = dict(type='ATME',
             schedule=[(0, 'h', .5), (1, 'v', .5), (2, 'h', .5)])


@pytest.mark.parametrize('granularity', ['token', 'line'])
def test_token_merge_restores_full_resolution_maps(granularity):
    model = CAITViT(
        arch=TINY, img_size=64, out_indices=(0, 3),
        token_reducer=dict(MERGE, granularity=granularity)).eval()
    for size in [(64, 64), (96, 160), (100, 130), (800 // 8, 1344 // 8)]:
        with torch.no_grad():
            outs = model(torch.randn(2, 3, *size))
        grid = (-(-size[0] // 16), -(-size[1] // 16))
        assert [tuple(o.shape) for o in outs] == [(2, 32, *grid)] * 2


def test_token_merge_applies_to_a_dense_checkpoint(timm_deit_s):
    """Training-free use: ATME adds no weights, so a dense checkpoint loads
    as it is; blocks before the first merge compute exactly what they did."""
    _, path = timm_deit_s
    dense = CAITViT(arch='deit-s', out_indices=(2, 3, 11), pretrained=path)
    merged = CAITViT(arch='deit-s', out_indices=(2, 3, 11), pretrained=path,
                     token_reducer=dict(type='ATME', schedule='deit-s'))
    assert dense.state_dict().keys() == merged.state_dict().keys()
    dense.init_weights()
    merged.init_weights()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        (d2, d3, d11), (m2, m3, m11) = dense.eval()(x), merged.eval()(x)
    assert torch.equal(d2, m2)
    # the preset's first merge is in block 3, after its attention
    assert not torch.allclose(d3, m3)
    assert m11.shape == d11.shape == (1, 384, 14, 14)


def test_padded_batch_with_token_merge_gives_each_image_its_own_features():
    torch.manual_seed(0)
    model = CAITViT(arch=TINY, img_size=64, out_indices=(1, 3),
                    token_reducer=MERGE).eval()
    sizes = [(70, 100), (96, 128), (40, 60), (96, 50)]
    images = [torch.randn(3, h, w) for h, w in sizes]
    batch = torch.zeros(len(sizes), 3, 96, 128)
    for i, img in enumerate(images):
        batch[i, :, :img.shape[1], :img.shape[2]] = img
    with torch.no_grad():
        batched = model(batch, valid_sizes=sizes)
        for i, img in enumerate(images):
            alone = model(img[None])
            for b, a in zip(batched, alone):
                h, w = a.shape[-2:]
                torch.testing.assert_close(
                    b[i:i + 1, :, :h, :w], a, rtol=1e-4, atol=1e-4)
                assert b[i, :, h:].abs().sum() == 0
                assert b[i, :, :, w:].abs().sum() == 0


def test_token_merge_schedule_is_checked_at_build_time():
    with pytest.raises(ValueError, match=r'entry 1 \(4, .h., 0.5\)'):
        CAITViT(arch=TINY,
                token_reducer=dict(
                    type='ATME', schedule=[(0, 'h', .5), (4, 'h', .5)]))


def test_token_prune_restores_full_resolution_maps():
    model = CAITViT(arch=TINY, img_size=64, out_indices=(0, 1, 3),
                    token_reducer=dict(type='TPS', blocks=(1, 2),
                                       keep_ratio=0.5)).eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 6, 8)] * 3
    # each host's value is spread over the patches it holds: 48 patches,
    # then 24 and 12 distinct tokens
    distinct = [o[0].flatten(1).unique(dim=1).shape[1] for o in outs]
    assert distinct == [48, 24, 12]


def test_learned_token_prune_loads_a_dense_deit(timm_deit_s):
    _, path = timm_deit_s
    model = CAITViT(arch='deit-s', pretrained=path,
                    token_reducer=dict(type='TPS', score='learned'))
    model.init_weights()
    assert model.token_reducer.predictors['3'].in_proj[1].in_features == 384
    model.train()
    model(torch.randn(2, 3, 224, 224))
    assert set(model.token_reducer.losses()) == {'loss_tps_ratio'}


def test_token_reducers_are_checked_at_build_time():
    with pytest.raises(ValueError, match='Unknown token reducer "DiffRate"'):
        CAITViT(arch=TINY, token_reducer=dict(type='DiffRate'))
    with pytest.raises(ValueError, match='needs a type'):
        CAITViT(arch=TINY, token_reducer=dict(schedule='deit-s'))
    with pytest.raises(ValueError, match='needs with_cls_token=True'):
        CAITViT(arch=TINY, with_cls_token=False,
                token_reducer=dict(type='TPS', blocks=(1, )))
    with pytest.raises(ValueError, match=r'blocks\[1\]=4 is out of range'):
        CAITViT(arch=TINY, token_reducer=dict(type='TPS', blocks=(1, 4)))
    model = CAITViT(arch=TINY,
                    token_reducer=dict(type='TPS', blocks=(1, ))).eval()
    with pytest.raises(NotImplementedError, match='padded batches'):
        model(torch.randn(2, 3, 64, 64), valid_sizes=[(64, 64), (32, 48)])


def test_cls_token_output_equals_timm_for_classification(timm_deit_s):
    reference, path = timm_deit_s
    model = CAITViT(arch='deit-s', out_indices=-1, final_norm=True,
                    out_type='cls_token', pretrained=path).eval()
    model.init_weights()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        (cls, ) = model(x)
        expected = reference.forward_features(x)[:, 0]
    assert cls.shape == (2, 384)
    torch.testing.assert_close(cls, expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match='out_type must be one of'):
        CAITViT(arch=TINY, out_type='avg_featmap')
    with pytest.raises(ValueError, match='needs with_cls_token'):
        CAITViT(arch=TINY, out_type='cls_token', with_cls_token=False)


@pytest.mark.parametrize('reducer, valid_sizes', [
    (dict(type='ATME', schedule=[(1, 'h', .5), (2, 'v', .5)]), None),
    (dict(type='ATME', schedule=[(1, 'h', .5), (2, 'v', .5)]),
     [(64, 96), (40, 50)]),
    (dict(type='TPS', blocks=(1, 2), keep_ratio=.6, prop_attn=True), None),
    (dict(type='ToMe', r=5), None),
])
def test_a_folded_attention_bias_gives_the_masked_outputs(
        reducer, valid_sizes):
    """'fold' (FlashAttention's path on CUDA) equals 'mask' (the CPU's)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 96)
    outs = {}
    for mode in ('mask', 'fold'):
        torch.manual_seed(1)
        model = CAITViT(arch=TINY, img_size=64, out_indices=(1, 3),
                        token_reducer=reducer, attn_bias_mode=mode).eval()
        with torch.no_grad():
            outs[mode] = model(x, valid_sizes=valid_sizes)
    for folded, masked in zip(outs['fold'], outs['mask']):
        torch.testing.assert_close(folded, masked, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="attn_bias_mode must be one of"):
        CAITViT(arch=TINY, attn_bias_mode='flash')


def test_position_embeddings_resampled_once_per_size_and_weights():
    """Inference at another size resamples pos_embed once; new weights (an
    in-place load) are seen at once; training resamples with gradient."""
    model = CAITViT(arch=TINY, img_size=64, out_indices=(3, )).eval()
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        first = model(x)[0]
        assert len(model._pos_cache) == 1
        again = model(x)[0]
        assert torch.equal(first, again)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        state['pos_embed'].mul_(3)
        model.load_state_dict(state)
        changed = model(x)[0]
    fresh = CAITViT(arch=TINY, img_size=64, out_indices=(3, )).eval()
    fresh.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(changed, fresh(x)[0], rtol=0, atol=0)
    model.train()
    model(x)[0].sum().backward()
    assert model.pos_embed.grad is not None and model.pos_embed.grad.any()
