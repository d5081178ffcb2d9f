"""Clipper 0.4's `deploy_keras_model`: the model (a Keras model, or a path to a `.keras` or legacy `.h5`
file) is saved in Keras 3's `.keras` format. The exact Keras and backend versions are recorded; the runtime
hands `func` what `keras.models.load_model` returns.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipper.admin.connection import ClipperConnection
from clipper.admin.deployers.framework import ModelSaver, deploy_framework_model, installed_pins, model_path
from clipper.admin.exceptions import ClipperException
from clipper.runtime.closure import FrameworkRecord
from clipper.runtime.frameworks import ModelFormat


def keras_saver(model_path_or_object: Any) -> ModelSaver:
    """Write the model as `.keras` (a `.keras` file is copied, an `.h5` file converted)."""
    keras = importlib.import_module("keras")
    model = model_path_or_object
    if isinstance(model, str | Path) and not Path(model).is_file():
        raise ClipperException(
            f"model_path_or_object {model} is not a file: pass a .keras file or a Keras model"
        )
    if isinstance(model, str | Path) and Path(model).suffix != ".keras":
        model = keras.models.load_model(model)
    if not isinstance(model, str | Path | keras.Model):
        raise ClipperException(
            f"model_path_or_object must be a keras.Model or a path, not {type(model).__name__}"
        )

    def save(directory: Path) -> FrameworkRecord:
        path = model_path(directory, ModelFormat.KERAS)
        if isinstance(model, keras.Model):
            model.save(path)
        else:
            shutil.copyfile(model, path)
        packages = installed_pins("keras", keras.backend.backend())
        return FrameworkRecord(format=ModelFormat.KERAS, packages=packages)

    return save


def deploy_keras_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[[Any, Any], Any],
    model_path_or_object: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Deploy a Keras model; replicas load it once and answer with `func(model, inputs)`."""
    options = (base_image, labels, registry, num_replicas, batch_size, pkgs_to_install)
    saver = keras_saver(model_path_or_object)
    deploy_framework_model(clipper_conn, name, version, input_type, func, saver, *options)
