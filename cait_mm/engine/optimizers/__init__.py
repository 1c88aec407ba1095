from .layer_decay import LayerDecayOptimizerConstructor

__all__ = ['LayerDecayOptimizerConstructor']
