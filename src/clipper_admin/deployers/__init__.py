"""Clipper 0.4's `clipper_admin.deployers` package path."""

from clipper_admin.deployers import python

__all__ = ["python"]
