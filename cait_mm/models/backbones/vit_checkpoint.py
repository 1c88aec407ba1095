"""Reading ViT weights: official DeiT/timm files and OpenMMLab checkpoints."""
from typing import Dict, Mapping, Optional, Tuple

import torch
from timm.layers import resample_abs_pos_embed
from torch import Tensor, nn

# Keys that only a classifier has; a dense backbone drops them on purpose.
_CLASSIFIER_ONLY = ('head.', 'head_dist.', 'fc_norm.')


def unwrap_state_dict(checkpoint: Mapping,
                      prefix: Optional[str] = None) -> Dict[str, Tensor]:
    """Return the tensors of a checkpoint as a flat state dict.

    Accepts a bare state dict, DeiT's ``{'model': ...}``, MMEngine's
    ``{'state_dict': ...}``, and strips a DDP ``module.`` prefix. With
    ``prefix`` (e.g. ``'backbone.'``) only keys under it are kept, without it.
    """
    for key in ('state_dict', 'model', 'module'):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    state = {
        (k[len('module.'):] if k.startswith('module.') else k): v
        for k, v in checkpoint.items() if isinstance(v, Tensor)
    }
    if prefix:
        state = {
            k[len(prefix):]: v
            for k, v in state.items() if k.startswith(prefix)
        }
        if not state:
            raise KeyError(f'No key in the checkpoint starts with "{prefix}"')
    return state


def convert_timm_vit(state: Dict[str, Tensor],
                     keep_final_norm: bool) -> Dict[str, Tensor]:
    """Turn a timm/DeiT classifier state dict into backbone weights.

    Drops the classifier heads, the distillation token of DeiT-distilled
    models (and its position-embedding row), and the final norm when the
    backbone has none.
    """
    state = dict(state)
    if 'dist_token' in state:
        del state['dist_token']
        pos = state['pos_embed']
        state['pos_embed'] = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)
    drop = _CLASSIFIER_ONLY if keep_final_norm else _CLASSIFIER_ONLY + (
        'norm.', )
    return {k: v for k, v in state.items() if not k.startswith(drop)}


def resize_pos_embed(pos_embed: Tensor,
                     new_grid,
                     num_prefix_tokens: int,
                     mode: str,
                     old_grid=None) -> Tensor:
    """Resample ``(1, P + h*w, C)`` position embeddings to ``new_grid``.

    ``old_grid`` defaults to a square grid, as in every released ViT/DeiT.
    """
    num_patches = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = int(round(num_patches**0.5))
        if side * side != num_patches:
            raise ValueError(f'pos_embed has {num_patches} patch positions, '
                             'not a square grid; give its grid explicitly')
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    return resample_abs_pos_embed(
        pos_embed,
        new_size=list(new_grid),
        old_size=list(old_grid),
        num_prefix_tokens=num_prefix_tokens,
        interpolation=mode,
        antialias=False)


def load_strict(module: nn.Module,
                state: Dict[str, Tensor],
                source: str,
                may_be_missing: Tuple[str, ...] = ()) -> None:
    """``load_state_dict`` that names every key and shape that does not fit.

    Keys under a prefix in ``may_be_missing`` (modules a pretrained file
    cannot have, e.g. a learned token scorer) keep their initial values when
    the checkpoint lacks them.

    Raises:
        RuntimeError: listing missing keys, unexpected keys and shape
            mismatches, so a checkpoint of another architecture is caught
            before training starts on half-loaded weights.
    """
    own = module.state_dict()
    missing = sorted(k for k in set(own) - set(state)
                     if not k.startswith(may_be_missing))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f'{k}: checkpoint {tuple(state[k].shape)} vs model '
        f'{tuple(own[k].shape)}' for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or mismatched:
        lines = [f'{source} does not fit {type(module).__name__}:']
        if missing:
            lines.append(f'  missing keys: {missing}')
        if unexpected:
            lines.append(f'  unexpected keys: {unexpected}')
        if mismatched:
            lines.append('  shape mismatch: ' + '; '.join(mismatched))
        raise RuntimeError('\n'.join(lines))
    module.load_state_dict(state, strict=False)
