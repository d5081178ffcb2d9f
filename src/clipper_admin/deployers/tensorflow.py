"""Clipper 0.4's `clipper_admin.deployers.tensorflow` module path."""

from clipper.admin.deployers.tensorflow import deploy_tensorflow_model

__all__ = ["deploy_tensorflow_model"]
