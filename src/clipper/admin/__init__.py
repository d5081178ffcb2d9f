"""What users import: ClipperConnection, container managers and deployers.

Docker and Kubernetes managers are imported on first use, so their SDKs stay optional.
"""

from __future__ import annotations

import importlib
from typing import Any

from clipper.admin.connection import ClipperConnection
from clipper.admin.exceptions import ClipperException, UnconnectedException
from clipper.admin.managers.local import LocalContainerManager

LAZY_MANAGERS = {
    "DockerContainerManager": ("clipper.admin.managers.docker", "docker"),
    "KubernetesContainerManager": ("clipper.admin.managers.kubernetes", "kubernetes"),
}

__all__ = [
    "ClipperConnection",
    "ClipperException",
    "LocalContainerManager",
    "UnconnectedException",
]


def lazy_manager(name: str) -> Any:
    """Import an optional manager class, or raise a ClipperException naming what is missing."""
    module_name, extra = LAZY_MANAGERS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise ClipperException(f"{name} is not available in this version of clipper") from e
        raise ClipperException(f"{name} needs the '{e.name}' package: pip install 'clipper[{extra}]'") from e
    return getattr(module, name)


def __getattr__(name: str) -> Any:
    if name in LAZY_MANAGERS:
        return lazy_manager(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
