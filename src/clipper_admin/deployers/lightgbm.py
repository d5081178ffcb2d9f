"""Clipper 0.4's `clipper_admin.deployers.lightgbm` module path."""

from clipper.admin.deployers.lightgbm import create_endpoint, deploy_lightgbm_model

__all__ = ["create_endpoint", "deploy_lightgbm_model"]
