"""Deploy a Python function as a model: Clipper 0.4's `deploy_python_closure` and `create_endpoint`.

The function is saved with clipper.runtime.closure.save_closure. With the local manager the model directory
lives in the cluster's state directory and replicas load it directly; with an image-building manager
(Docker) it becomes the build context of a model image.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from clipper.admin.connection import ClipperConnection
from clipper.admin.deployers.framework import DeployOptions, deploy_saved_model
from clipper.runtime.closure import save_closure

logger = logging.getLogger(__name__)


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
    input_shape: list[int] | None = None,
) -> None:
    """Save `func`, start its replicas and register the version (which makes it current), as Clipper.

    The version is checked first: an existing one is refused before its files or image are touched.
    `input_shape` (ours, numeric types): `func` gets each batch as one (batch, *input_shape) array.
    """
    options = DeployOptions(
        base_image, labels, registry, num_replicas, batch_size, pkgs_to_install, input_shape
    )
    deploy_saved_model(
        clipper_conn, name, version, input_type, functools.partial(save_closure, func), options
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
    input_shape: list[int] | None = None,
) -> None:
    """Register app `name`, deploy `func` as model `name`, and link them (`input_shape`: both's)."""
    clipper_conn.register_application(name, input_type, default_output, slo_micros, input_shape=input_shape)
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
        input_shape=input_shape,
    )
    clipper_conn.link_model_to_app(name, name)
