"""torch.compile where users run models: every backbone variant traces into
one graph (``fullgraph=True``), equals eager, and recompiles only for a new
input shape; UperNet's tensor forward and Mask R-CNN's features trace whole.

Inductor compiles each graph in about half a minute on two CPU cores, so
the models are tiny and each is compiled once.
"""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch._dynamo.testing import CompileCounter

from cait_mm.engine.compile import (COMPILED_PARTS, compile_options,
                                    compile_parts)
from ..backbone_variants import MERGE, backbone
from ..conftest import REPO

# the list (ToMe and EViT trace alike: the ONNX tests export them),
# ATME with the bias folded into the heads, CUDA's path, and its whole-line
# merges
COMPILED = ('atme-adaptive', 'atme-fold', 'atme-line', 'atme-token',
            'atme-whole-line', 'cdcp-exported', 'dense', 'tps')


@pytest.mark.parametrize('name', COMPILED)
def test_every_backbone_compiles_to_one_graph_equal_to_eager(name):
    # every model instance is a new guard on the same forward, and earlier
    # tests compile CAITViT too: without a reset the variants add up past
    # dynamo's recompile limit (8), which fullgraph=True makes an error
    torch._dynamo.reset()
    model = backbone(name)
    x = torch.randn(2, 3, 64, 64)
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    with torch.no_grad():
        expected, got = model(x), compiled(x)
    assert len(got) == len(expected) == 2
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_a_new_input_shape_and_only_that_recompiles():
    counter = CompileCounter()
    for name in ('dense', 'atme-token', 'tps'):
        torch._dynamo.reset()
        counter.clear()
        model = backbone(name)
        compiled = torch.compile(model, backend=counter, fullgraph=True,
                                 dynamic=False)
        with torch.no_grad():
            for shape in ((64, 64), (64, 64), (48, 80), (64, 64), (48, 80)):
                compiled(torch.randn(2, 3, *shape))
        assert counter.frame_count == 2, name


def _mm_model(scope, config, **backbone):
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    cfg = Config.fromfile(osp.join(REPO, 'tests/data/configs', config))
    cfg.model.backbone.update(backbone)
    torch.manual_seed(0)
    model = registry.build(cfg.model)
    model.init_weights()
    return model.eval()


def test_upernet_tensor_forward_compiles_whole_with_atme():
    model = _mm_model('mmseg', 'demo_tiny.py',
                      token_reducer=dict(type='ATME', schedule=MERGE))
    x = torch.randn(2, 3, 64, 64)
    compiled = torch.compile(lambda t: model(t, mode='tensor'),
                             fullgraph=True, dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x, mode='tensor'),
                                   rtol=1e-4, atol=1e-4)


def test_mask_rcnn_features_compile_whole_with_atme_padded_or_not():
    """Backbone and neck in one graph (AOTAutograd, functionalised: what
    inductor and CUDA-graph capture take), also for a padded batch: its
    content sizes are host ints, so nothing is read back from the device
    (a read would break the graph) and a fixed set of sizes is capturable.
    """
    model = _mm_model('mmdet', 'mask_rcnn_demo_tiny.py',
                      token_reducer=dict(type='ATME', schedule=MERGE))
    x = torch.randn(2, 3, 64, 96)
    for sizes in (None, [(64, 96), (40, 70)]):

        def features(t, sizes=sizes):
            maps = model.backbone(t, valid_sizes=sizes)
            return model.neck(maps, valid_sizes=sizes)

        compiled = torch.compile(features, backend='aot_eager',
                                 fullgraph=True, dynamic=False)
        with torch.no_grad():
            for a, b in zip(compiled(x), features(x)):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_compile_parts_compiles_in_place_and_keeps_parameter_names():
    model = _mm_model('mmseg', 'demo_tiny.py')
    names = list(model.state_dict())
    eager = copy.deepcopy(model)
    counter = CompileCounter()
    torch._dynamo.reset()
    assert compile_parts(model, backend=counter, dynamic=False) == [
        'backbone', 'decode_head']
    assert list(model.state_dict()) == names
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'),
                                   eager(x, mode='tensor'))
    assert counter.frame_count == 2
    with pytest.raises(ValueError, match='none of'):
        compile_parts(torch.nn.Linear(2, 2))
    assert compile_options('cuda')['mode'] == 'reduce-overhead'
    assert 'mode' not in compile_options('cpu')
    assert set(COMPILED_PARTS) >= {'backbone', 'neck', 'decode_head'}
