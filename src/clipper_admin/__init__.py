"""Clipper 0.4's `clipper_admin` import paths over clipper.admin, so Clipper scripts run unchanged.

DockerContainerManager and KubernetesContainerManager are imported on first use (their SDKs are optional);
CLIPPER_TEMP_DIR is computed on first use.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from clipper import __version__
from clipper.admin import LAZY_MANAGERS, lazy_manager
from clipper.admin.connection import ClipperConnection
from clipper.admin.exceptions import ClipperException, UnconnectedException
from clipper.admin.managers.local import LocalContainerManager
from clipper_admin import deployers

__registry__ = "clipper"

__all__ = [
    "CLIPPER_TEMP_DIR",
    "ClipperConnection",
    "ClipperException",
    "LocalContainerManager",
    "UnconnectedException",
    "__registry__",
    "__version__",
    "deployers",
]


def __getattr__(name: str) -> Any:
    if name == "CLIPPER_TEMP_DIR":
        # Clipper's directory for temporary files (its build contexts; its tests make scratch dirs in it):
        # `<system temp dir>/clipper`, found when first asked for, as looking it up touches the disk.
        return str(Path(tempfile.gettempdir()) / "clipper")
    if name in LAZY_MANAGERS:
        return lazy_manager(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
