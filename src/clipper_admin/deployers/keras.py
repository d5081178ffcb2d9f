"""Clipper 0.4's `clipper_admin.deployers.keras` module path."""

from clipper.admin.deployers.keras import create_endpoint, deploy_keras_model

__all__ = ["create_endpoint", "deploy_keras_model"]
