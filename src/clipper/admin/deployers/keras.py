"""Clipper 0.4's `deploy_keras_model`: the model (a Keras model, or a path to a `.keras` or legacy `.h5`
file) is saved in Keras 3's `.keras` format. The exact Keras and backend versions are recorded; the runtime
hands `func` what `keras.models.load_model` returns.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

from clipper.admin.deployers.clipper_api import framework_deployer, framework_endpoint
from clipper.admin.deployers.framework import ModelSaver, installed_pins, model_path
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


deploy_keras_model = framework_deployer(__name__, "model_path_or_object", keras_saver)
create_endpoint = framework_endpoint(__name__, "model_path_or_object", deploy_keras_model)
