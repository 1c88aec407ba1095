"""Runtime pieces on top of MMEngine (imported lazily by the registries)."""
from .compile import (COMPILED_PARTS, add_compile_arguments, compile_options,
                      compile_parts, compile_runner_model)
from .cpu_distributed import (CPUDistributedDataParallel,
                              setup_cpu_distributed, teardown_distributed)
from .hooks import (CDCPHook, NonFiniteLossHook, ProgressBarHook,
                    SafeCheckpointHook, TestSpeedHook)
from .optimizers import LayerDecayOptimizerConstructor
from .strict_load import load_model_checkpoint, strict_load_from
from .tool_args import add_runner_arguments, parse_runner_args

__all__ = [
    'CDCPHook', 'COMPILED_PARTS', 'CPUDistributedDataParallel',
    'LayerDecayOptimizerConstructor', 'NonFiniteLossHook', 'ProgressBarHook',
    'SafeCheckpointHook', 'TestSpeedHook', 'add_compile_arguments',
    'add_runner_arguments', 'parse_runner_args', 'compile_options',
    'compile_parts', 'compile_runner_model', 'load_model_checkpoint',
    'setup_cpu_distributed', 'strict_load_from', 'teardown_distributed'
]
