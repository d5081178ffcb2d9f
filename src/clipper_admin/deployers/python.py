"""Clipper 0.4's `clipper_admin.deployers.python` module path."""

from clipper.admin.deployers.python import create_endpoint, deploy_python_closure

__all__ = ["create_endpoint", "deploy_python_closure"]
