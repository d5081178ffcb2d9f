"""Clipper 0.4's `clipper_admin.deployers.xgboost` module path."""

from clipper.admin.deployers.xgboost import deploy_xgboost_model

__all__ = ["deploy_xgboost_model"]
