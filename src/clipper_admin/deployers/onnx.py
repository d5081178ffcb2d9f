"""Clipper 0.4's `clipper_admin.deployers.onnx` module path."""

from clipper.admin.deployers.onnx import create_endpoint, deploy_onnx_model, deploy_pytorch_model

__all__ = ["create_endpoint", "deploy_onnx_model", "deploy_pytorch_model"]
