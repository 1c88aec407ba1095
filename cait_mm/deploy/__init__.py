"""Deployment: the compressed models outside PyTorch (ONNX, ONNX Runtime)."""
from .onnx_export import (PartForward, check_onnx, export_onnx, onnx_session,
                          run_onnx)

__all__ = ['PartForward', 'check_onnx', 'export_onnx', 'onnx_session',
           'run_onnx']
