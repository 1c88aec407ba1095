"""Compressed checkpoints: weights plus the spec that rebuilds the model.

A compressed checkpoint is an ordinary state-dict checkpoint (tensors only,
loadable with ``torch.load(weights_only=True)``) whose ``meta['cait_mm']``
holds, in plain Python types, the backbone's
:class:`~cait_mm.core.spec.CompressionSpec` (format 2)::

    meta['cait_mm'] = dict(
        format=2,
        prefix='backbone.',          # where the backbone's keys are
        pos_grid=[14, 14],           # grid of the stored position embeddings
        spec=dict(
            arch=dict(embed_dims=384, mlp_ratio=4.0, num_heads=6,
                      num_layers=12),
            patch_size=16, qkv_bias=True, with_cls_token=True,
            channel_widths=[dict(qk_dim=32, v_dim=32, mlp_hidden=768), ...],
            token_reducer=dict(type='ATME', schedule=[[3, 'h', 0.5], ...],
                               granularity='token')),
        heads=dict(                  # channel-pruned heads and necks, if any
            decode_head=dict(channel_widths=dict(ppm=[256, ...], ...))))

``CAITViT(compressed=FILE)`` reads the file once, at build time (the widths
decide the layer shapes, so they must be known before any weight is
loaded), and loads the weights it read in ``init_weights``, i.e. in
MMEngine's order.
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.runner import CheckpointLoader
from torch import Tensor, nn

from cait_mm.core import ChannelGroup, CompressionSpec
from cait_mm.utils.atomic_write import atomic_output
from cait_mm.utils.checkpoint_files import load_local_checkpoint
from .vit_checkpoint import (convert_timm_vit, load_strict, resize_pos_embed,
                             unwrap_state_dict)
from .vit_layouts import TIMM, describe, vit_state_dict

META_KEY = 'cait_mm'
FORMAT = 2
READS = (2, )


@dataclass(frozen=True)
class CompressionMeta:
    """What ``meta['cait_mm']`` says about the backbone in a file, and
    the widths of its channel-pruned heads (module name -> ``dict(
    channel_widths=...)``)."""
    spec: CompressionSpec
    prefix: Optional[str]
    pos_grid: Optional[Tuple[int, int]]
    heads: Dict[str, Dict] = field(default_factory=dict)

    def to_dict(self) -> Dict:
        info = dict(format=FORMAT, prefix=self.prefix,
                    pos_grid=None if self.pos_grid is None else list(
                        self.pos_grid),
                    spec=self.spec.to_dict())
        if self.heads:
            info['heads'] = self.heads
        return info


def _require(data, keys, source: str) -> None:
    missing = [k for k in keys
               if not isinstance(data, Mapping) or k not in data]
    if missing:
        raise ValueError(f'{source}: malformed cait_mm metadata, missing '
                         f'{missing}')


def compression_meta(checkpoint: Mapping,
                     source: str) -> Optional[CompressionMeta]:
    """The :class:`CompressionMeta` of a loaded checkpoint, or ``None`` for
    a file without cait_mm metadata.

    Raises:
        ValueError: for a format this version cannot read, or metadata
            missing a key (named).
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    info = meta.get(META_KEY) if isinstance(meta, Mapping) else None
    if info is None:
        return None
    version = info.get('format') if isinstance(info, Mapping) else None
    if version not in READS:
        raise ValueError(f'{source} has cait_mm metadata of format '
                         f'{version!r}; this version reads formats {READS}')
    _require(info, ('spec', ), source)
    spec, pos_grid = info['spec'], info.get('pos_grid')
    heads = info.get('heads') or {}
    for name, head in heads.items():
        _require(head, ('channel_widths', ), f'{source} (heads.{name})')
    return CompressionMeta(
        spec=CompressionSpec.from_dict(spec, source),
        prefix=info.get('prefix'),
        pos_grid=None if pos_grid is None else tuple(pos_grid),
        heads=dict(heads))


@dataclass
class CompressedCheckpoint:
    """A compressed checkpoint read once: its metadata and the tensors
    under its prefix (the backbone's), as a checkpoint dict."""
    filename: str
    meta: CompressionMeta
    checkpoint: Dict

    @property
    def source(self) -> str:
        return f'compressed checkpoint "{self.filename}"'

    @classmethod
    def read(cls, filename: str) -> 'CompressedCheckpoint':
        """Load ``filename`` (any path MMEngine's ``CheckpointLoader``
        reads).

        Raises:
            ValueError: if the file has no cait_mm metadata (it is not an
                exported model), or metadata this version cannot read.
        """
        checkpoint = CheckpointLoader.load_checkpoint(
            filename, map_location='cpu')
        source = f'compressed checkpoint "{filename}"'
        meta = compression_meta(checkpoint, source)
        if meta is None:
            raise ValueError(
                f'Checkpoint "{filename}" has no cait_mm compression metadata:'
                ' it is not an exported compressed model '
                '(tools/deployment/export_compressed.py writes those). Load '
                'a dense checkpoint with pretrained= or init_cfg=dict(type='
                "'Pretrained', ...) instead.")
        # keep the backbone's tensors only (the heads may be most of it)
        prefix = meta.prefix or ''
        state = {k: v for k, v in unwrap_state_dict(checkpoint).items()
                 if k.startswith(prefix)}
        return cls(filename, meta,
                   dict(state_dict=state, meta=checkpoint['meta']))


def save_compressed(filename: str, state_dict: Dict[str, Tensor],
                    meta: CompressionMeta) -> None:
    """Write ``state_dict`` with ``meta`` as ``meta['cait_mm']``.

    Only tensors and plain Python types go in, so the file loads with
    ``torch.load(weights_only=True)`` and needs no allow-list. The file is
    written under a temporary name and only takes ``filename`` once it
    loads that way (:func:`~cait_mm.utils.atomic_write.atomic_output`): a
    kill or an error leaves the previous export as it was.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_output(filename) as tmp_path:
        torch.save(dict(state_dict=state, meta={META_KEY: meta.to_dict()}),
                   tmp_path)
        torch.load(tmp_path, map_location='cpu', weights_only=True)


def export_compressed(model: nn.Module,
                      filename: str,
                      backbone: str = 'backbone',
                      drop: Tuple[str, ...] = ()) -> Dict:
    """Compact ``model``'s CAITViT and channel-prunable heads in place and
    save the whole model.

    The compactors are folded and the pruned channels removed
    (``CAITViT.compact``, and ``compact`` of every channel-pruned head or
    neck, such as a ``CAITUPerHead`` or ``roi_head.bbox_head``'s
    ``CAITShared2FCBBoxHead`` with compactors or slim widths); the file
    holds every weight of
    ``model`` (heads included, so it evaluates as it is) except the modules
    under ``drop`` (e.g. a distillation teacher), plus the spec that
    rebuilds the compact backbone and the widths of those heads.

    Returns:
        dict: the ``meta['cait_mm']`` written.
    """
    module = getattr(model, backbone, None)
    if module is None or not hasattr(module, 'compression_spec'):
        raise TypeError(f'{type(model).__name__}.{backbone} is not a CAITViT: '
                        'only CAITViT backbones can be exported')
    module.compact()
    heads = {}
    skip = tuple(f'{name}.' for name in (backbone, *drop))
    for name, child in list(model.named_modules()):
        if name and not f'{name}.'.startswith(skip) and getattr(
                child, 'is_pruned', False):
            child.compact()
            heads[name] = dict(channel_widths=child.channel_widths)
    meta = CompressionMeta(module.compression_spec(), f'{backbone}.',
                           module.pos_grid, heads)
    state = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith(tuple(f'{d}.' for d in drop))
    }
    save_compressed(filename, state, meta)
    return meta.to_dict()


def load_vit_checkpoint(vit: nn.Module, checkpoint: Mapping, source: str,
                        prefix: Optional[str] = None) -> None:
    """Load a checkpoint already read into a ``CAITViT``, resizing position
    embeddings: DeiT/timm files, mmseg's and mmpretrain's ViTs (the layout
    is told from the keys, :mod:`.vit_layouts`; a whole segmentor's or
    classifier's ViT is found under ``backbone.`` without ``prefix``),
    compressed checkpoints and our other OpenMMLab checkpoints.

    A compressed checkpoint's metadata gives its prefix and the grid of its
    position embeddings; its channel widths must be the ViT's.

    Raises:
        CheckpointError: for a layout CAITViT does not read (the keys found
            are named).
        RuntimeError: for a channel-pruned file whose widths differ, or any
            missing, unexpected or mis-shaped key (see :func:`load_strict`).
    """
    meta = compression_meta(checkpoint, source)
    old_grid = None
    if meta is not None:
        prefix = meta.prefix if prefix is None else prefix
        old_grid = meta.pos_grid
        theirs, ours = list(meta.spec.channel_widths), vit.channel_widths
        if theirs != ours:
            block = next((i for i, (a, b) in enumerate(zip(theirs, ours))
                          if a != b), min(len(theirs), len(ours)))
            raise RuntimeError(
                f'{source} is channel-pruned; its widths do not fit this '
                f'CAITViT (first differing block: {block}). Build the '
                'backbone from it with compressed=FILE instead.')
    state, layout = vit_state_dict(unwrap_state_dict(checkpoint), source,
                                   prefix)
    if layout != TIMM:
        # the keys named in errors are the converted ones
        source = f'{source} (read as {describe(layout)})'
    state = convert_timm_vit(state, keep_final_norm=vit.final_norm)
    if 'pos_embed' in state:
        state['pos_embed'] = resize_pos_embed(
            state['pos_embed'], vit.pos_grid, vit.num_prefix_tokens,
            vit.interpolate_mode, old_grid=old_grid)
    # A pretrained ViT has no token scorer and no compactors: they keep
    # their initialisation (compactors start as the identity).
    compactors = tuple(f'{name}.' for name, m in vit.named_modules()
                       if isinstance(m, ChannelGroup))
    load_strict(vit, state, source,
                may_be_missing=('token_reducer.', ) + compactors)


def configure_compressed_backbone(cfg, checkpoint: str) -> bool:
    """Point ``cfg.model.backbone`` at ``checkpoint`` if it is an exported
    compressed model, so that a config's whole model (heads included) can
    be loaded from an export: the backbone must be built with the file's
    pruned widths first (``CAITViT(compressed=...)``), and so must the
    channel-pruned heads (their ``channel_widths``).

    Does nothing for ordinary checkpoints or when the config already sets
    ``model.backbone.compressed``. Returns whether it changed ``cfg``.
    """
    if not osp.isfile(checkpoint):
        return False
    meta = compression_meta(
        load_local_checkpoint(checkpoint, map_location='cpu'),
        f'Checkpoint "{checkpoint}"')
    backbone = cfg.model.get('backbone')
    if meta is None or backbone is None or backbone.get('compressed'):
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
    for name, head in meta.heads.items():
        _configure_head(cfg.model, name, head['channel_widths'], checkpoint)
    return True


def _configure_head(model_cfg, name: str, widths: Dict,
                    checkpoint: str) -> None:
    """Build ``model_cfg``'s head at dotted path ``name`` (e.g.
    ``roi_head.bbox_head``) at ``widths``."""
    from cait_mm.registry import MODELS
    head = model_cfg
    for key in name.split('.'):
        head = head.get(key) if isinstance(head, Mapping) else None
    kind = None if head is None else head.get('type')
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    if not callable(getattr(cls, 'compact', None)):
        raise ValueError(
            f'{checkpoint} has a channel-pruned {name}; the config\'s '
            f'model.{name} ({kind}) cannot be built at its widths: use a '
            'channel-prunable type such as cait_mm.CAITUPerHead')
    head.update(channel_widths=widths, channel_prune=None)
