"""Weight initialisers for ``init_cfg`` (registered as ``cait_mm.*``)."""
import torch
from mmengine.model.weight_init import update_init_info
from mmengine.runner import CheckpointLoader
from torch import nn

from cait_mm.registry import WEIGHT_INITIALIZERS
from .backbones.vit_checkpoint import unwrap_state_dict


@WEIGHT_INITIALIZERS.register_module()
class PretrainedHead:
    """Load a classification head from an official DeiT/timm checkpoint.

    DeiT's file holds the classifier as ``head.weight (K, C)`` and
    ``head.bias (K,)``; an mmpretrain head keeps its output layer elsewhere
    (``layers.head`` in ``VisionTransformerClsHead``, ``fc`` in
    ``LinearClsHead``), so MMEngine's ``Pretrained`` with a prefix cannot
    load it. This loads the file's layer into the *last* ``nn.Linear`` of
    the module it initialises (its output layer)::

        head=dict(type='VisionTransformerClsHead', num_classes=1000,
                  in_channels=384,
                  init_cfg=dict(type='cait_mm.PretrainedHead',
                                checkpoint='pretrain/deit_small_...pth'))

    Args:
        checkpoint (str): DeiT/timm file (``{'model': ...}``, MMEngine's
            ``{'state_dict': ...}`` or a bare state dict).
        prefix (str): Where the layer is in the file.
        map_location (str): Where to load the tensors.
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: str = 'head.',
                 map_location: str = 'cpu'):
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.map_location = map_location

    def __call__(self, module: nn.Module) -> None:
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise TypeError(f'cait_mm.PretrainedHead: {type(module).__name__}'
                            ' has no nn.Linear to load into')
        layer = linears[-1]
        source = f'cait_mm.PretrainedHead: checkpoint "{self.checkpoint}"'
        state = unwrap_state_dict(
            CheckpointLoader.load_checkpoint(
                self.checkpoint, map_location=self.map_location),
            self.prefix)
        own = layer.state_dict()
        if set(state) != set(own) or any(
                state[k].shape != own[k].shape for k in own):
            raise RuntimeError(
                f'{source}: "{self.prefix}*" holds '
                f'{ {k: tuple(v.shape) for k, v in state.items()} }, the '
                f'head\'s output layer needs '
                f'{ {k: tuple(v.shape) for k, v in own.items()} } (a head '
                'for another number of classes starts from scratch: drop '
                'this init_cfg)')
        with torch.no_grad():
            for name, value in state.items():
                getattr(layer, name).copy_(value)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return (f'{type(self).__name__}: "{self.prefix}*" of '
                f'{self.checkpoint}')
