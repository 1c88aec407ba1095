"""Frozen teachers for distillation."""
from .timm_teacher import TimmTeacher

__all__ = ['TimmTeacher']
