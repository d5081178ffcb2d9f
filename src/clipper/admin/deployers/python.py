"""Deploy a Python function as a model: Clipper 0.4's `deploy_python_closure` and `create_endpoint`.

The function is saved with clipper.runtime.closure.save_closure. With the local manager the model directory
lives in the cluster's state directory and replicas load it directly; with an image-building manager
(Docker) it becomes the build context of a model image.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipper.admin.connection import ClipperConnection
from clipper.admin.exceptions import ClipperException
from clipper.runtime.closure import save_closure

logger = logging.getLogger(__name__)


def _package_module(requirement: str) -> str:
    """The import name a pip requirement most likely provides (`scikit-learn>=1` -> `scikit_learn`)."""
    name = re.split(r"[<>=!~\[;@ ]", requirement.strip(), maxsplit=1)[0]
    return name.replace("-", "_").lower()


def check_local_packages(pkgs_to_install: list[str] | None) -> None:
    """Local replicas run in this interpreter's environment: refuse packages it cannot import."""
    missing = [p for p in pkgs_to_install or [] if importlib.util.find_spec(_package_module(p)) is None]
    if missing:
        raise ClipperException(
            f"LocalContainerManager does not install packages; {', '.join(missing)} cannot be imported here. "
            f"Install them in this environment (pip install {' '.join(missing)}) and deploy again."
        )


def deploy_python_closure(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[[Any], Any],
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Save `func`, start its replicas and register the version (which makes it current), as Clipper.

    The version is checked first: an existing one is refused before its files or image are touched.
    """
    version = str(version)
    clipper_conn.check_new_version(name, version)
    path = clipper_conn.cm.model_directory(name, version)
    if path is not None:
        try:
            check_local_packages(pkgs_to_install)
            save_closure(func, path)
            clipper_conn.deploy_model(name, version, input_type, str(path), labels, num_replicas, batch_size)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
    else:
        with tempfile.TemporaryDirectory(suffix="clipper") as tmp:
            save_closure(func, Path(tmp))
            clipper_conn.build_and_deploy_model(
                name,
                version,
                input_type,
                tmp,
                base_image,
                labels,
                registry,
                num_replicas,
                batch_size,
                pkgs_to_install,
            )
    logger.info("Python closure saved and model %s:%s deployed", name, version)


def create_endpoint(
    clipper_conn: ClipperConnection,
    name: str,
    input_type: str,
    func: Callable[[Any], Any],
    default_output: str = "None",
    version: Any = 1,
    slo_micros: int = 3000000,
    labels: list[str] | None = None,
    registry: str | None = None,
    base_image: str = "default",
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Register app `name`, deploy `func` as model `name`, and link them."""
    clipper_conn.register_application(name, input_type, default_output, slo_micros)
    deploy_python_closure(
        clipper_conn,
        name,
        version,
        input_type,
        func,
        base_image,
        labels,
        registry,
        num_replicas,
        batch_size,
        pkgs_to_install,
    )
    clipper_conn.link_model_to_app(name, name)
