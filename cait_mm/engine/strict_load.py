"""``load_from`` that refuses a checkpoint which does not fit the model."""
from typing import Tuple

from mmengine.model import is_model_wrapper
from mmengine.runner import CheckpointLoader
from torch import nn

from cait_mm.core import ChannelGroup, TokenReducer
from cait_mm.models.backbones.vit_checkpoint import (load_strict,
                                                     unwrap_state_dict)


def optional_prefixes(model: nn.Module) -> Tuple[str, ...]:
    """Keys a checkpoint of the same model without compression may lack:
    CDCP compactors (they start as the identity) and token reducers' own
    weights (e.g. TPS's learned scorers)."""
    return tuple(f'{name}.' for name, module in model.named_modules()
                 if isinstance(module, (ChannelGroup, TokenReducer)))


def strict_load_from(runner) -> None:
    """Make ``runner`` load ``load_from`` strictly.

    MMEngine loads ``load_from`` non-strictly: a checkpoint of another
    architecture trains anyway, on whatever half of it fits, with a warning
    per key. Here every key must fit (as ``tools/test.py`` demands), except
    those of :func:`optional_prefixes`; otherwise loading fails, before the
    first iteration, listing the missing, unexpected and mis-shaped keys.
    Resuming is MMEngine's (a resumed checkpoint is the run's own).
    """
    def load_checkpoint(filename, map_location='cpu', strict=True,
                        revise_keys=()):
        checkpoint = CheckpointLoader.load_checkpoint(
            filename, map_location=map_location)
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        # unwrap_state_dict drops a DDP 'module.' prefix, as MMEngine does
        load_strict(model, unwrap_state_dict(checkpoint),
                    f'load_from "{filename}"',
                    may_be_missing=optional_prefixes(model))
        runner.logger.info(f'Load checkpoint from {filename} (strict)')
        return checkpoint

    runner.load_checkpoint = load_checkpoint
