"""``load_from`` that refuses a checkpoint which does not fit the model, and
reads mmseg's and mmpretrain's ViT layouts into CAITViT backbones."""
from typing import Mapping, Tuple

from mmengine.model import is_model_wrapper
from mmengine.runner import CheckpointLoader
from torch import nn

from cait_mm.core import ChannelGroup, TokenReducer
from cait_mm.models.backbones import CAITViT
from cait_mm.models.backbones.vit_checkpoint import (load_strict,
                                                     unwrap_state_dict)
from cait_mm.models.backbones.vit_layouts import convert_model_state, describe


def optional_prefixes(model: nn.Module) -> Tuple[str, ...]:
    """Keys a checkpoint of the same model without compression may lack:
    CDCP compactors (they start as the identity) and token reducers' own
    weights (e.g. TPS's learned scorers)."""
    return tuple(f'{name}.' for name, module in model.named_modules()
                 if isinstance(module, (ChannelGroup, TokenReducer)))


def load_model_checkpoint(model: nn.Module,
                          checkpoint: Mapping,
                          source: str,
                          may_be_missing: Tuple[str, ...] = ()) -> None:
    """Load a whole model's checkpoint (already read) strictly.

    The ViT of every ``CAITViT`` in ``model`` may be in mmseg's or
    mmpretrain's layout (e.g. a segmentor from mmseg's model zoo loaded
    into the config that mirrors it): it is renamed to CAITViT's, the rest
    (heads, necks) is taken as it is.

    Raises:
        CheckpointError: for a backbone in a layout CAITViT does not read.
        RuntimeError: listing missing (other than under
            ``may_be_missing``), unexpected and mis-shaped keys.
    """
    prefixes = [f'{name}.' if name else ''
                for name, module in model.named_modules()
                if isinstance(module, CAITViT)]
    # unwrap_state_dict drops a DDP 'module.' prefix, as MMEngine does
    state, converted = convert_model_state(unwrap_state_dict(checkpoint),
                                           prefixes, source)
    if converted:
        # the keys named in errors are the converted ones
        source += ' (' + ', '.join(
            f'"{prefix}*" read as {describe(layout)}'
            for prefix, layout in converted.items()) + ')'
    load_strict(model, state, source, may_be_missing=may_be_missing)


def strict_load_from(runner, allow_uncompressed: bool = True) -> None:
    """Make ``runner`` load ``load_from`` strictly
    (:func:`load_model_checkpoint`).

    MMEngine loads ``load_from`` non-strictly: a checkpoint of another
    architecture trains anyway, on whatever half of it fits, with a warning
    per key. Here every key must fit; with ``allow_uncompressed`` (to train
    from a dense checkpoint) except those of :func:`optional_prefixes`;
    otherwise loading fails, before the first iteration, listing the
    missing, unexpected and mis-shaped keys. Resuming is MMEngine's (a
    resumed checkpoint is the run's own).
    """
    def load_checkpoint(filename, map_location='cpu', strict=True,
                        revise_keys=()):
        checkpoint = CheckpointLoader.load_checkpoint(
            filename, map_location=map_location)
        # as MMEngine's Runner.load_checkpoint does
        runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        load_model_checkpoint(
            model, checkpoint, f'load_from "{filename}"',
            may_be_missing=optional_prefixes(model)
            if allow_uncompressed else ())
        runner.logger.info(f'Load checkpoint from {filename} (strict)')
        return checkpoint

    runner.load_checkpoint = load_checkpoint
