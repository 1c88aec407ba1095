"""Classifiers built on mmpretrain (imported by the MODELS registry on the
first look-up of their names, so ``import cait_mm`` does not need it)."""
from .distill_image_classifier import DistillImageClassifier

__all__ = ['DistillImageClassifier']
