"""The steps every deployer shares: save the model's files, record them, deploy the directory.

A framework's `save_model(directory)` (a ModelSaver) writes the model in its format (MODEL_FILES of
clipper.runtime.frameworks) and returns the FrameworkRecord (format, exact package versions); the user's
`func(model, inputs)` is saved beside it with save_closure, and the runtime loads the model once at start
and calls `func` with it, as Clipper's framework containers did.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipper.admin.connection import ClipperConnection
from clipper.admin.exceptions import ClipperException
from clipper.runtime.closure import FrameworkRecord, save_closure
from clipper.runtime.frameworks import MODEL_FILES, ModelFormat, canonical_name

logger = logging.getLogger(__name__)

ModelSaver = Callable[[Path], FrameworkRecord]
"""Writes the model into a model directory in its framework's format; returns what the runtime needs."""


def booster_saver(booster: Any, model_format: ModelFormat, module: str) -> ModelSaver:
    """Boosters (XGBoost, LightGBM) write their own portable file with `save_model(path)`."""

    def save(directory: Path) -> FrameworkRecord:
        booster.save_model(str(model_path(directory, model_format)))
        return FrameworkRecord(format=model_format, packages=installed_pins(module))

    return save


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


def installed_pins(*modules: str) -> dict[str, str]:
    """{pip distribution: exact installed version} for the distributions that provide the import `modules`
    (`xgboost` -> `{"xgboost-cpu": "3.2.0"}`), as metadata.json records them."""
    providers = importlib.metadata.packages_distributions()
    pins = {}
    for module in modules:
        names = providers.get(module)
        if not names:
            raise ClipperException(f"No installed distribution provides the module '{module}'; install it.")
        dist = importlib.metadata.distribution(names[0])
        pins[canonical_name(dist.metadata["Name"])] = dist.version
    return pins


def model_path(directory: Path, model_format: ModelFormat) -> Path:
    """Where `model_format`'s file goes in a model directory (the runtime reads it from there)."""
    return directory / MODEL_FILES[model_format]


def save_framework_model(func: Callable[[Any, Any], Any], save_model: ModelSaver, directory: Path) -> None:
    """Write a framework model directory: the model in its format, `func`, and the record in metadata.json."""
    directory.mkdir(parents=True, exist_ok=True)
    record = save_model(directory)
    save_closure(func, directory, framework=record)
    logger.info("saved a %s model in %s needing %s", record.format, directory, record.packages)


@dataclass(frozen=True)
class DeployOptions:
    """The deploy settings every Clipper deployer takes after the model, with Clipper's defaults."""

    base_image: str = "default"
    labels: list[str] | None = None
    registry: str | None = None
    num_replicas: int = 1
    batch_size: int = -1
    pkgs_to_install: list[str] | None = None
    input_shape: list[int] | None = None  # ours: numeric inputs reach the model as one (batch, *shape) array


def deploy_saved_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    save: Callable[[Path], object],
    options: DeployOptions,
) -> None:
    """`save(directory)` the model's files, start its replicas and register the version (it becomes current).

    The version is checked first: an existing one is refused before its files or image are touched. With
    the local manager the directory is the model's own (removed again if the deploy fails) and replicas run
    in this environment, which must have the packages a framework model records (the manager checks them
    before any replica starts); an image-building manager (Docker) gets a temporary build context instead.
    """
    version = str(version)
    clipper_conn.check_new_version(name, version)
    o = options
    path = clipper_conn.cm.model_directory(name, version)
    if path is not None:
        try:
            check_local_packages(o.pkgs_to_install)
            save(path)
            clipper_conn.deploy_model(
                name, version, input_type, str(path), o.labels, o.num_replicas, o.batch_size, o.input_shape
            )
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
    else:
        with tempfile.TemporaryDirectory(suffix="clipper") as tmp:
            save(Path(tmp))
            clipper_conn.build_and_deploy_model(
                name, version, input_type, tmp, o.base_image, o.labels, o.registry, o.num_replicas,
                o.batch_size, o.pkgs_to_install, o.input_shape,
            )  # fmt: skip
