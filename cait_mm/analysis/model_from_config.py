"""Build a config's model outside a Runner, for analysis tools."""
from typing import Dict, Optional

from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import CheckpointLoader
from mmengine.utils import import_modules_from_strings
from torch import nn


def build_model(config: str,
                overrides: Optional[Dict] = None,
                device: str = 'cpu',
                checkpoint: Optional[str] = None) -> nn.Module:
    """The model of ``config`` (with ``--cfg-options``-style ``overrides``)
    in eval mode on ``device``.

    Without ``checkpoint`` no weights are loaded at all (speed and FLOPs
    need none, and pretrained files may be absent); with it, the
    checkpoint is loaded strictly (an exported compressed checkpoint with
    its training config: the backbone is built from its metadata; mmseg's
    and mmpretrain's ViT layouts are converted).
    """
    cfg = Config.fromfile(config)
    if overrides:
        cfg.merge_from_dict(overrides)
    if checkpoint is not None:
        from cait_mm.models.backbones import configure_compressed_backbone
        configure_compressed_backbone(cfg, checkpoint)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    cfg.model.pop('pretrained', None)
    if cfg.model.get('backbone'):
        cfg.model.backbone.pop('init_cfg', None)
        cfg.model.backbone.pop('pretrained', None)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        from cait_mm.engine.strict_load import load_model_checkpoint
        load_model_checkpoint(
            model,
            CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu'),
            f'Checkpoint "{checkpoint}"')
    return model.to(device).eval()
