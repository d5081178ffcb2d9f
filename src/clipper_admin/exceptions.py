"""Clipper 0.4's `clipper_admin.exceptions` module path."""

from clipper.admin.exceptions import ClipperException, UnconnectedException

__all__ = ["ClipperException", "UnconnectedException"]
