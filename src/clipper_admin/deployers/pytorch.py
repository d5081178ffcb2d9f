"""Clipper 0.4's `clipper_admin.deployers.pytorch` module path."""

from clipper.admin.deployers.pytorch import create_endpoint, deploy_pytorch_model

__all__ = ["create_endpoint", "deploy_pytorch_model"]
