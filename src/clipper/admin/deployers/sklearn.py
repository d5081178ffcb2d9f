"""Deploy a scikit-learn estimator (ours; Clipper 0.4 had none): saved with skops, which loads without running
arbitrary pickled code, or with joblib when skops is not installed. Either way the exact scikit-learn version
is recorded and checked before loading, since neither format promises to load in another version.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipper.admin.connection import ClipperConnection
from clipper.admin.deployers.framework import ModelSaver, deploy_framework_model, installed_pins, model_path
from clipper.runtime.closure import FrameworkRecord
from clipper.runtime.frameworks import ModelFormat


def sklearn_saver(sklearn_model: Any) -> ModelSaver:
    """Save `sklearn_model` as skops (or joblib without skops), recording scikit-learn's exact version."""

    def save(directory: Path) -> FrameworkRecord:
        if importlib.util.find_spec("skops") is not None:
            path = model_path(directory, ModelFormat.SKOPS)
            importlib.import_module("skops.io").dump(sklearn_model, path)
            return FrameworkRecord(format=ModelFormat.SKOPS, packages=installed_pins("sklearn", "skops"))
        path = model_path(directory, ModelFormat.JOBLIB)
        importlib.import_module("joblib").dump(sklearn_model, path)
        return FrameworkRecord(format=ModelFormat.JOBLIB, packages=installed_pins("sklearn", "joblib"))

    return save


def deploy_sklearn_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[[Any, Any], Any],
    sklearn_model: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Deploy `sklearn_model`; replicas load it once and answer with `func(model, inputs)`."""
    options = (base_image, labels, registry, num_replicas, batch_size, pkgs_to_install)
    deploy_framework_model(
        clipper_conn, name, version, input_type, func, sklearn_saver(sklearn_model), *options
    )
