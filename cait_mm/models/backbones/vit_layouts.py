"""ViT checkpoint layouts: timm/DeiT's (CAITViT's own names), mmseg's and
mmpretrain's ``VisionTransformer``, told apart by their keys and converted
to CAITViT's names here, for ``CAITViT``'s ``init_cfg``/``pretrained``,
whole-model ``load_from`` and ``tools/model_converters/``.

=====================  =====================  ===========================
timm / DeiT (ours)     mmseg                  mmpretrain
=====================  =====================  ===========================
patch_embed.proj       patch_embed.projection patch_embed.projection
blocks.N.norm1         layers.N.ln1           layers.N.ln1
blocks.N.attn.qkv      layers.N.attn.attn     layers.N.attn.qkv
                       .in_proj_weight/bias
blocks.N.attn.proj     layers.N.attn.attn     layers.N.attn.proj
                       .out_proj
blocks.N.norm2         layers.N.ln2           layers.N.ln2
blocks.N.mlp.fc1       layers.N.ffn.        layers.N.ffn.layers.0.0
                       layers.0.0
blocks.N.mlp.fc2       layers.N.ffn.layers.1  layers.N.ffn.layers.1
norm (final)           ln1                    ln1
fc_norm (pooled)                              ln2 (``avg_featmap``)
=====================  =====================  ===========================

``cls_token``, ``pos_embed`` and DeiT's ``dist_token`` keep their names in
all three. mmcv's ``MultiheadAttention`` (mmseg) keeps q, k and v stacked
in ``in_proj_weight`` in the order, and with the head-major rows, of
timm's ``qkv``, so the tensors move as they are.
"""
import os
import os.path as osp
import re
from typing import Dict, Iterable, Optional, Tuple

import torch
from mmengine.runner import CheckpointLoader
from torch import Tensor

from cait_mm.utils.atomic_write import atomic_output
from cait_mm.utils.checkpoint_files import (CheckpointError,
                                            register_checkpoint_loader)
from .vit_checkpoint import unwrap_state_dict

TIMM, MMSEG, MMPRETRAIN = 'timm', 'mmseg', 'mmpretrain'
_NAMES = {
    TIMM: 'timm/DeiT',
    MMSEG: "mmseg's VisionTransformer",
    MMPRETRAIN: "mmpretrain's VisionTransformer"
}

# The key of a block's input projection is in one layout only.
_SIGNATURES = {
    TIMM: re.compile(r'blocks\.\d+\.attn\.qkv\.weight'),
    MMSEG: re.compile(r'layers\.\d+\.attn\.attn\.in_proj_weight'),
    MMPRETRAIN: re.compile(r'layers\.\d+\.attn\.qkv\.weight'),
}

_P = r'(weight|bias)'
_OPENMMLAB_RULES = (
    ('cls_token', 'cls_token'),
    ('pos_embed', 'pos_embed'),
    (rf'patch_embed\.projection\.{_P}', r'patch_embed.proj.\1'),
    (rf'layers\.(\d+)\.ln1\.{_P}', r'blocks.\1.norm1.\2'),
    (rf'layers\.(\d+)\.ln2\.{_P}', r'blocks.\1.norm2.\2'),
    (rf'layers\.(\d+)\.ffn\.layers\.0\.0\.{_P}', r'blocks.\1.mlp.fc1.\2'),
    (rf'layers\.(\d+)\.ffn\.layers\.1\.{_P}', r'blocks.\1.mlp.fc2.\2'),
    # the final norm of both (``final_norm=True``)
    (rf'ln1\.{_P}', r'norm.\1'),
)


def _compiled(*rules):
    return tuple((re.compile(src), dst) for src, dst in rules)


_RULES = {
    MMSEG: _compiled(
        *_OPENMMLAB_RULES,
        (r'layers\.(\d+)\.attn\.attn\.in_proj_(weight|bias)',
         r'blocks.\1.attn.qkv.\2'),
        (rf'layers\.(\d+)\.attn\.attn\.out_proj\.{_P}',
         r'blocks.\1.attn.proj.\2')),
    MMPRETRAIN: _compiled(
        *_OPENMMLAB_RULES,
        ('dist_token', 'dist_token'),
        (rf'layers\.(\d+)\.attn\.(qkv|proj)\.{_P}', r'blocks.\1.attn.\2.\3'),
        # the norm after average pooling is timm's fc_norm, a classifier
        # part that a dense backbone drops
        (rf'ln2\.{_P}', r'fc_norm.\1')),
}
# Layers OpenMMLab builds without a bias where CAITViT has one (mmseg's
# ``patch_bias=False`` default and ``qkv_bias=False``, which drops the
# output projection's bias too; mmpretrain's ``pre_norm``): a zero bias
# computes the same layer.
_ZERO_BIAS = (re.compile(r'patch_embed\.proj'),
              re.compile(r'blocks\.\d+\.attn\.proj'))


def key_summary(keys: Iterable[str], limit: int = 40) -> str:
    """The distinct keys with block numbers as ``N``
    (``layers.N.ln1.weight``), sorted, at most ``limit`` of them."""
    found = sorted({re.sub(r'(?<![^.])\d+(?![^.])', 'N', k) for k in keys})
    more = len(found) - limit
    return ', '.join(found[:limit]) + (f' ... and {more} more'
                                       if more > 0 else '')


def detect_layout(state: Dict[str, Tensor]) -> Optional[str]:
    """The layout of a ViT state dict (without prefix), or ``None`` when no
    key says."""
    found = [
        layout for layout, sign in _SIGNATURES.items()
        if any(sign.fullmatch(k) for k in state)
    ]
    return found[0] if len(found) == 1 else None


def _unknown_layout(state: Dict[str, Tensor], source: str) -> CheckpointError:
    return CheckpointError(
        f'{source} is not in a ViT layout that CAITViT reads ('
        f'{", ".join(_NAMES.values())}); the keys found: '
        f'{key_summary(state) or "none"}')


def to_cait_layout(state: Dict[str, Tensor], source: str,
                   layout: Optional[str] = None
                   ) -> Tuple[Dict[str, Tensor], str]:
    """Rename a ViT state dict (keys without prefix) to CAITViT's names.

    Nothing is dropped or resized: the result holds the file's tensors
    under timm/DeiT names (``dist_token``, ``norm`` and classifier parts
    included), with zero biases for layers OpenMMLab built without one.

    Args:
        state: The ViT's tensors.
        source: What to call the file in errors.
        layout: The layout, if known; detected from the keys otherwise.

    Returns:
        tuple: the renamed state dict and the layout it was in.

    Raises:
        CheckpointError: for keys in no known layout (or in several), and
            for keys the layout has but CAITViT cannot hold (e.g. mmseg's
            ``pre_ln``, mmpretrain's layer scale ``gamma1``), named.
    """
    layout = layout or detect_layout(state)
    if layout is None:
        raise _unknown_layout(state, source)
    if layout == TIMM:
        return dict(state), layout
    rules = _RULES[layout]
    converted, unknown = {}, []
    for key, value in state.items():
        for pattern, replacement in rules:
            if pattern.fullmatch(key):
                converted[pattern.sub(replacement, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f'{source} is in the layout of {_NAMES[layout]}, with keys that '
            f'CAITViT has no place for: {key_summary(unknown)} (a ViT '
            'variant CAITViT does not build: pre-norm, patch norm, layer '
            'scale, ...)')
    if 'cls_token' not in converted:
        raise CheckpointError(
            f'{source} is a ViT without a class token (mmpretrain\'s '
            'with_cls_token=False): its position embeddings have no class '
            'row, which CAITViT keeps; it cannot be loaded')
    for key in list(converted):
        module = key[:-len('.weight')]
        if key.endswith('.weight') and f'{module}.bias' not in converted \
                and any(p.fullmatch(module) for p in _ZERO_BIAS):
            weight = converted[key]
            converted[f'{module}.bias'] = weight.new_zeros(weight.shape[0])
    return converted, layout


def _vit_prefix(state: Dict[str, Tensor]) -> str:
    """Where a checkpoint's ViT is: at the top level, or under
    ``backbone.`` in a whole OpenMMLab model."""
    if detect_layout(state) is None and any(
            k.startswith('backbone.') for k in state):
        return 'backbone.'
    return ''


def vit_state_dict(state: Dict[str, Tensor], source: str,
                   prefix: Optional[str] = None
                   ) -> Tuple[Dict[str, Tensor], str]:
    """The ViT tensors of a flat state dict, under CAITViT's names.

    ``prefix`` (e.g. ``'backbone.'``) selects the ViT's keys; without it
    they are found at the top level or, in a whole OpenMMLab model
    (an mmseg segmentor, an mmpretrain classifier), under ``backbone.``.

    Returns:
        tuple: the ViT's tensors without prefix (see :func:`to_cait_layout`)
        and the layout they were in.
    """
    if prefix is None:
        prefix = _vit_prefix(state)
    if prefix:
        state = {
            k[len(prefix):]: v
            for k, v in state.items() if k.startswith(prefix)
        }
        if not state:
            raise KeyError(f'{source}: no key starts with "{prefix}"')
    return to_cait_layout(state, source)


def describe(layout: str) -> str:
    """How errors name a layout (``"mmseg's VisionTransformer"``)."""
    return _NAMES[layout]


def convert_model_state(state: Dict[str, Tensor], prefixes: Iterable[str],
                        source: str
                        ) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """A whole model's state dict with the ViT under each of ``prefixes``
    (``'backbone.'`` in a segmentor) renamed to CAITViT's names; every
    other key as it is (heads, necks: the same modules in mmseg's and our
    configs). A prefix with no key is left for the strict load to report.

    Returns:
        tuple: the state dict, and the prefixes converted with the layout
        each was in.
    """
    state, converted_from = dict(state), {}
    for prefix in prefixes:
        own = {k[len(prefix):]: v for k, v in state.items()
               if k.startswith(prefix)}
        if not own:
            continue
        converted, layout = to_cait_layout(own, f'{source} ("{prefix}*")')
        if layout == TIMM:
            continue
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        state.update({prefix + k: v for k, v in converted.items()})
        converted_from[prefix] = layout
    return state, converted_from


def convert_checkpoint(state: Dict[str, Tensor], layout: str,
                       source: str) -> Dict[str, Tensor]:
    """A checkpoint's tensors with its ViT (a bare ViT's keys, or a whole
    model's under ``backbone.``) moved from ``layout`` to CAITViT's names,
    for ``tools/model_converters/``.

    Raises:
        CheckpointError: if the ViT is in another layout (named) or in none
            (the keys found are named).
    """
    prefix = _vit_prefix(state)
    own = {k[len(prefix):]: v for k, v in state.items()
           if k.startswith(prefix)}
    found = detect_layout(own)
    if found is None:
        raise _unknown_layout(own, source)
    if found != layout:
        raise CheckpointError(
            f'{source} holds a ViT in the layout of {_NAMES[found]}, not '
            f'of {_NAMES[layout]}' +
            (' (CAITViT\'s own: nothing to convert)' if found == TIMM else
             f' (convert it with {found}2cait.py)'))
    return convert_model_state(state, [prefix], source)[0]


def convert_checkpoint_file(src: str, dst: str, layout: str) -> Dict:
    """Read ``src`` (a path or URL MMEngine's ``CheckpointLoader`` reads),
    convert its ViT from ``layout`` (:func:`convert_checkpoint`) and write
    the tensors to ``dst`` as a plain state dict, complete or not at all.

    Returns:
        dict: ``converted`` and ``kept``, the number of tensors of the ViT
        and of the rest of the model.
    """
    # local files through cait_mm's safe loader (also when run alone)
    register_checkpoint_loader()
    source = f'Checkpoint "{src}"'
    state = unwrap_state_dict(
        CheckpointLoader.load_checkpoint(src, map_location='cpu'))
    converted = convert_checkpoint(state, layout, source)
    folder = osp.dirname(osp.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    with atomic_output(dst) as tmp:
        torch.save({k: v.contiguous() for k, v in converted.items()}, tmp)
    prefix = _vit_prefix(state)
    vit = sum(k.startswith(prefix) for k in converted)
    return dict(converted=vit, kept=len(converted) - vit)
