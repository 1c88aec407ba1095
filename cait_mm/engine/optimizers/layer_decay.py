"""Layer-wise learning-rate decay for plain-ViT backbones (BEiT, ViTDet)."""
from typing import List, Optional, Union

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from cait_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """MMEngine's default constructor with layer-wise lr decay on top.

    Blocks near the input get smaller learning rates, as ViTDet and BEiT
    fine-tune pretrained ViTs: a parameter at depth ``d`` gets the lr its
    other ``paramwise_cfg`` rules give it, times
    ``decay_rate ** (num_layers + 1 - d)``, where ``d`` is 0 for the patch
    embedding, position embedding and class token, ``i + 1`` for
    ``blocks.i``, and ``num_layers + 1`` (no decay) for everything else: the
    backbone's final norm, the neck and the heads.

    mmseg's ``LayerDecayOptimizerConstructor`` only accepts BEiT, MAE and
    ConvNeXt backbones, and ViTDet's lives in mmdet's ``projects/``, which
    the wheel does not ship; this one reads the module names of
    ``CAITViT`` (``cls_token``, ``pos_embed``, ``patch_embed``,
    ``blocks.i``).

    ``paramwise_cfg`` keys, besides the default constructor's:

    - ``decay_rate`` (float, required): in ``(0, 1]``; 1 disables decay.
    - ``num_layers`` (int, optional): depth of the backbone; default
      ``len(model.<backbone>.blocks)``.
    - ``backbone`` (str, optional): attribute of the model holding the ViT;
      default ``'backbone'``.

    Example::

        optim_wrapper = dict(
            constructor='cait_mm.LayerDecayOptimizerConstructor',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            paramwise_cfg=dict(decay_rate=0.7, norm_decay_mult=0.))
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        decay_rate = paramwise_cfg.get('decay_rate')
        if not isinstance(decay_rate, (int, float)) or isinstance(
                decay_rate, bool) or not 0 < decay_rate <= 1:
            raise ValueError(
                'LayerDecayOptimizerConstructor needs paramwise_cfg.'
                f'decay_rate in (0, 1], got {decay_rate!r}')
        num_layers = paramwise_cfg.get('num_layers')
        if num_layers is not None and (not isinstance(num_layers, int)
                                       or num_layers < 1):
            raise ValueError('paramwise_cfg.num_layers must be a positive '
                             f'int, got {num_layers!r}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.decay_rate = float(decay_rate)
        self.num_layers = num_layers
        self.backbone = paramwise_cfg.get('backbone', 'backbone')

    def layer_depth(self, name: str, num_layers: int) -> int:
        """Depth ``d`` of the parameter called ``name`` in the model."""
        prefix = self.backbone + '.'
        if not name.startswith(prefix):
            return num_layers + 1
        local = name[len(prefix):]
        if local.split('.')[0] in ('cls_token', 'pos_embed', 'patch_embed'):
            return 0
        if local.startswith('blocks.'):
            return int(local.split('.')[1]) + 1
        return num_layers + 1

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   is_dcn_module: Optional[Union[int, float]] = None) -> None:
        """The default param groups (one per parameter), then, at the top
        call, each group's lr scaled by its parameter's depth."""
        start = len(params)
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:  # a recursive call: the top one scales every group once
            return
        backbone = getattr(module, self.backbone, None)
        blocks = getattr(backbone, 'blocks', None)
        num_layers = self.num_layers or (len(blocks) if blocks else None)
        if num_layers is None:
            raise ValueError(
                f'LayerDecayOptimizerConstructor: the model has no '
                f'"{self.backbone}.blocks" to count layers from; set '
                'paramwise_cfg.num_layers (and paramwise_cfg.backbone)')
        names = {id(p): n for n, p in module.named_parameters()}
        for group in params[start:]:
            depth = self.layer_depth(names[id(group['params'][0])],
                                     num_layers)
            scale = self.decay_rate**(num_layers + 1 - depth)
            group['lr'] = group.get('lr', self.base_lr) * scale
