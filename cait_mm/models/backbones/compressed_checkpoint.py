"""Compressed checkpoints: weights plus what it takes to rebuild the model.

A compressed checkpoint is an ordinary state-dict checkpoint (tensors only,
loadable with ``torch.load(weights_only=True)``) whose ``meta['cait_mm']``
describes the backbone it holds in plain Python types::

    meta['cait_mm'] = dict(
        format=1,
        prefix='backbone.',          # where the backbone's keys are
        backbone=dict(
            arch=dict(embed_dims=384, num_layers=12, num_heads=6,
                      mlp_ratio=4.0),
            patch_size=16, pos_grid=[14, 14], qkv_bias=True,
            with_cls_token=True,
            channel_widths=[dict(qk_dim=32, v_dim=32, mlp_hidden=768), ...],
            token_merge=dict(schedule=[[3, 'h', 0.5], ...],
                             granularity='token')))

``CAITViT(compressed=FILE)`` reads it at build time (the widths decide the
layer shapes, so they must be known before any weight is loaded), then loads
the weights in ``init_weights``, i.e. in MMEngine's order.
"""
import os.path as osp
from typing import Dict, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.runner import CheckpointLoader
from torch import nn

META_KEY = 'cait_mm'
FORMAT = 1


def compression_info(checkpoint: Mapping, source: str) -> Optional[Dict]:
    """``meta['cait_mm']`` of a loaded checkpoint, or ``None``."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    info = meta.get(META_KEY) if isinstance(meta, Mapping) else None
    if info is None:
        return None
    if info.get('format') != FORMAT:
        raise ValueError(f'{source} has cait_mm metadata of format '
                         f'{info.get("format")!r}; this version reads format '
                         f'{FORMAT}')
    return info


def read_compression_meta(filename: str) -> Dict:
    """``meta['cait_mm']`` of a compressed checkpoint file.

    Raises:
        ValueError: if the file has none (it is not an exported model).
    """
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    info = compression_info(checkpoint, f'Checkpoint "{filename}"')
    if info is None:
        raise ValueError(
            f'Checkpoint "{filename}" has no cait_mm compression metadata: it '
            'is not an exported compressed model (tools/export_compressed.py '
            'writes those). Load a dense checkpoint with pretrained= or '
            "init_cfg=dict(type='Pretrained', ...) instead.")
    return info


def save_compressed(filename: str, state_dict: Dict[str, torch.Tensor],
                    info: Dict) -> None:
    """Write ``state_dict`` with ``info`` as ``meta['cait_mm']``.

    Only tensors and plain Python types go in, so the file loads with
    ``torch.load(weights_only=True)`` and needs no allow-list.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    torch.save(
        dict(state_dict=state, meta={META_KEY: dict(info, format=FORMAT)}),
        filename)


def export_compressed(model: nn.Module,
                      filename: str,
                      backbone: str = 'backbone',
                      drop: Tuple[str, ...] = ()) -> Dict:
    """Compact ``model``'s CAITViT in place and save the whole model.

    The compactors are folded and the pruned channels removed
    (``CAITViT.compact``); the file holds every weight of ``model`` (heads
    included, so it evaluates as it is) except the modules under ``drop``
    (e.g. a distillation teacher), plus the metadata that rebuilds the
    compact backbone.

    Returns:
        dict: the ``meta['cait_mm']`` written.
    """
    module = getattr(model, backbone, None)
    if module is None or not hasattr(module, 'compact'):
        raise TypeError(f'{type(model).__name__}.{backbone} is not a CAITViT: '
                        'only CAITViT backbones can be exported')
    module.compact()
    info = module.compression_info(prefix=f'{backbone}.')
    state = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith(tuple(f'{d}.' for d in drop))
    }
    save_compressed(filename, state, info)
    return info


def configure_compressed_backbone(cfg, checkpoint: str) -> bool:
    """Point ``cfg.model.backbone`` at ``checkpoint`` if it is an exported
    compressed model, so that a config's whole model (heads included) can
    be loaded from an export: the backbone must be built with the file's
    pruned widths first (``CAITViT(compressed=...)``).

    Does nothing for ordinary checkpoints or when the config already sets
    ``model.backbone.compressed``. Returns whether it changed ``cfg``.
    """
    if not osp.isfile(checkpoint):
        return False
    info = compression_info(
        torch.load(checkpoint, map_location='cpu', weights_only=True),
        f'Checkpoint "{checkpoint}"')
    backbone = cfg.model.get('backbone')
    if info is None or backbone is None or backbone.get('compressed'):
        return False
    print_log(
        f'{checkpoint} is an exported compressed model: building the '
        'backbone from its metadata (model.backbone.compressed)', 'current')
    backbone.update(
        compressed=checkpoint,
        channel_prune=None,
        channel_widths=None,
        pretrained=None,
        init_cfg=None)
    cfg.model.pretrained = None
    return True
