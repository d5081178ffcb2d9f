"""Clipper 0.4's `clipper_admin.deployers.pytorch` module path."""

from clipper.admin.deployers.pytorch import deploy_pytorch_model

__all__ = ["deploy_pytorch_model"]
