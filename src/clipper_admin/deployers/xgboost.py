"""Clipper 0.4's `clipper_admin.deployers.xgboost` module path."""

from clipper.admin.deployers.xgboost import create_endpoint, deploy_xgboost_model

__all__ = ["create_endpoint", "deploy_xgboost_model"]
