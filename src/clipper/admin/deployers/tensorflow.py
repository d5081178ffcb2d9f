"""Clipper 0.4's `deploy_tensorflow_model`, for TensorFlow 2: the model is a SavedModel, given as its
directory or as a `tf.Module`/Keras model to save; the runtime hands `func` what `tf.saved_model.load` gives.
TF1 sessions, checkpoints and frozen graphs (what Clipper 0.4 took) no longer exist in TensorFlow 2.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipper.admin.deployers.clipper_api import framework_deployer, framework_endpoint
from clipper.admin.deployers.framework import ModelSaver, installed_pins, model_path
from clipper.admin.exceptions import ClipperException
from clipper.runtime.closure import FrameworkRecord
from clipper.runtime.frameworks import ModelFormat

TF1_GONE = (
    "TensorFlow 1 sessions, checkpoints and frozen graphs are gone from TensorFlow 2, which clipper serves; "
    "pass a SavedModel directory or a tf.Module/Keras model instead (tf.saved_model.save(module, path))."
)


def _savedmodel_writer(model: Any) -> Callable[[Path], object]:
    tf = importlib.import_module("tensorflow")
    if isinstance(model, str | Path):
        source = Path(model)
        if not (source / "saved_model.pb").is_file():
            raise ClipperException(f"{source} is not a SavedModel directory (no saved_model.pb). {TF1_GONE}")
        return lambda path: shutil.copytree(source, path)
    if hasattr(model, "export") and type(model).__module__.startswith("keras"):
        return lambda path: model.export(str(path), format="tf_saved_model", verbose=False)
    if isinstance(model, tf.Module):
        return lambda path: tf.saved_model.save(model, str(path))
    raise ClipperException(f"Cannot deploy a {type(model).__name__} with deploy_tensorflow_model. {TF1_GONE}")


def tensorflow_saver(tf_sess_or_saved_model_path: Any) -> ModelSaver:
    """Save (or copy) the model as a SavedModel, recording the installed TensorFlow distribution."""
    write = _savedmodel_writer(tf_sess_or_saved_model_path)

    def save(directory: Path) -> FrameworkRecord:
        write(model_path(directory, ModelFormat.TF_SAVEDMODEL))
        return FrameworkRecord(format=ModelFormat.TF_SAVEDMODEL, packages=installed_pins("tensorflow"))

    return save


deploy_tensorflow_model = framework_deployer(__name__, "tf_sess_or_saved_model_path", tensorflow_saver)
create_endpoint = framework_endpoint(__name__, "tf_sess_or_saved_model_path", deploy_tensorflow_model)
