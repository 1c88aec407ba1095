"""Write the reference outputs that tests/test_reference_outputs.py checks.

Run once, at commit dda4733 (before the backbone was reshaped around one
compression spec and one token-reducer slot), to record what every backbone
variant, a UperNet and a Mask R-CNN computed then:

    python tests/data/reference/make_reference.py

It writes, next to this file:

- ``outputs.pth``: per case, the settings the model was built with (in the
  API of that commit: ``token_merge`` / ``token_prune``), its inputs and
  its outputs; plus the torch version and CPU capability they were
  computed with. Weights are not stored: :func:`fill_weights` sets every
  weight from its name and shape alone (names are checkpoint keys, which
  every version must keep), so the same weights come back in any version;
- ``compressed_format1.pth``: a channel-pruned, token-merged tiny backbone
  exported by ``export_compressed`` in compressed-checkpoint format 1.
"""
import copy
import os.path as osp
import sys

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(osp.dirname(HERE)))
sys.path.insert(0, REPO)
from tests.reference_models import (BACKBONE, CASES, MERGE,  # noqa: E402
                                    fill_weights)


def _backbone(settings):
    from cait_mm.models import CAITViT
    model = CAITViT(**BACKBONE, **settings)
    fill_weights(model)
    return model.eval()


def _pruned(settings):
    model = _backbone(dict(settings, channel_prune=dict(
        groups=('qk', 'v', 'mlp'))))
    for entries in model.channel_groups().values():
        for _, group in entries:
            group.select(0.5)
    return model


def backbone_cases():
    x = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(1))
    cases = {}
    with torch.no_grad():
        for name, settings, sizes in CASES:
            model = _backbone(settings)
            cases[name] = dict(
                settings=copy.deepcopy(settings), valid_sizes=sizes,
                outputs=model(x, valid_sizes=sizes))
        # CDCP: the masked model (compactors, eval) and its export
        settings = dict(token_merge=dict(schedule=MERGE))
        model = _pruned(settings)
        cases['cdcp_masked'] = dict(
            settings=dict(settings, channel_prune=dict(
                groups=('qk', 'v', 'mlp'))), valid_sizes=None,
            outputs=model(x))
        from cait_mm.models.backbones import export_compressed

        class Wrapper(torch.nn.Module):

            def __init__(self, backbone):
                super().__init__()
                self.backbone = backbone

        path = osp.join(HERE, 'compressed_format1.pth')
        export_compressed(Wrapper(model), path)
        cases['cdcp_exported'] = dict(
            settings=None, valid_sizes=None, outputs=model.eval()(x))
    return x, cases


def upernet_case():
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, 'tests/data/configs/demo_tiny.py'))
    cfg.model.backbone.token_merge = dict(schedule=MERGE)
    cfg.model.backbone.out_indices = (1, 3)
    cfg.model.decode_head.in_channels = [64, 64]
    cfg.model.decode_head.in_index = [0, 1]
    cfg.model.auxiliary_head.in_index = 1
    model_cfg = cfg.model.to_dict()
    model = MODELS.build(cfg.model)
    fill_weights(model)
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model(x, mode='tensor')
    return dict(model=model_cfg, inputs=x, outputs=out)


def mask_rcnn_case():
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    cfg = Config.fromfile(
        osp.join(REPO, 'tests/data/configs/mask_rcnn_demo_tiny.py'))
    cfg.model.backbone.token_merge = dict(schedule=MERGE)
    # few proposals and a narrow box head keep the file small
    cfg.model.roi_head.bbox_head.fc_out_channels = 16
    cfg.model.test_cfg.rpn.max_per_img = 8
    cfg.model.test_cfg.rcnn.max_per_img = 8
    model_cfg = cfg.model.to_dict()
    model = MODELS.build(cfg.model)
    fill_weights(model)
    model.eval()
    g = torch.Generator().manual_seed(4)
    sizes = [(60, 44), (40, 62)]
    batch = torch.zeros(2, 3, 64, 64)
    for i, (h, w) in enumerate(sizes):
        batch[i, :, :h, :w] = torch.randn(3, h, w, generator=g)
    samples = [
        DetDataSample(metainfo=dict(
            img_shape=s, ori_shape=s, pad_shape=(64, 64),
            batch_input_shape=(64, 64), scale_factor=(1., 1.)))
        for s in sizes
    ]
    with torch.no_grad():
        feats = model.extract_feat(batch, samples)
        tensor_out = model(batch, samples, mode='tensor')
        preds = model.predict(batch, samples)
    (cls_score, bbox_pred, mask_preds), = tensor_out
    return dict(
        model=model_cfg, inputs=batch, img_shapes=sizes, feats=feats,
        # every other mask logit: enough to see any change, a quarter of
        # the size
        tensor_outputs=(cls_score, bbox_pred, mask_preds[..., ::2, ::2]),
        bboxes=[p.pred_instances.bboxes for p in preds],
        scores=[p.pred_instances.scores for p in preds],
        # every fourth mask pixel: enough to see any change, a sixteenth
        # of the size
        masks=[p.pred_instances.masks[:, ::4, ::4] for p in preds])


def _own(value):
    """Tensors cloned (a view would save its whole base), recursively."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _own(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_own(v) for v in value)
    return value


def main():
    x, cases = backbone_cases()
    torch.save(
        _own(dict(
            torch=str(torch.__version__),
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
            backbone=dict(settings=BACKBONE, inputs=x, cases=cases),
            upernet=upernet_case(),
            mask_rcnn=mask_rcnn_case())), osp.join(HERE, 'outputs.pth'))
    print('saved', osp.join(HERE, 'outputs.pth'))


if __name__ == '__main__':
    main()
