"""Clipper 0.4's `clipper_admin.clipper_admin` module path."""

from clipper.admin.connection import DEFAULT_PREDICTION_CACHE_SIZE_BYTES, ClipperConnection
from clipper.admin.exceptions import ClipperException, UnconnectedException
from clipper.schema import NO_CONTAINER as CONTAINERLESS_MODEL_IMAGE

__all__ = [
    "CONTAINERLESS_MODEL_IMAGE",
    "DEFAULT_PREDICTION_CACHE_SIZE_BYTES",
    "ClipperConnection",
    "ClipperException",
    "UnconnectedException",
]
