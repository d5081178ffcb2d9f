"""Clipper 0.4's `clipper_admin.deployers.tensorflow` module path."""

from clipper.admin.deployers.tensorflow import create_endpoint, deploy_tensorflow_model

__all__ = ["create_endpoint", "deploy_tensorflow_model"]
