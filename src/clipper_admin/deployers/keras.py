"""Clipper 0.4's `clipper_admin.deployers.keras` module path."""

from clipper.admin.deployers.keras import deploy_keras_model

__all__ = ["deploy_keras_model"]
