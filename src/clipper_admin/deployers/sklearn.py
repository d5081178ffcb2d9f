"""Clipper 0.4's `clipper_admin.deployers.sklearn` module path."""

from clipper.admin.deployers.sklearn import create_endpoint, deploy_sklearn_model

__all__ = ["create_endpoint", "deploy_sklearn_model"]
