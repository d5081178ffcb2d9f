"""Deploy a scikit-learn estimator (ours; Clipper 0.4 had none): saved with skops, which loads without running
arbitrary pickled code, or with joblib when skops is not installed. Either way the exact scikit-learn version
is recorded and checked before loading, since neither format promises to load in another version.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

from clipper.admin.deployers.clipper_api import framework_deployer, framework_endpoint
from clipper.admin.deployers.framework import ModelSaver, installed_pins, model_path
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


deploy_sklearn_model = framework_deployer(__name__, "sklearn_model", sklearn_saver)
create_endpoint = framework_endpoint(__name__, "sklearn_model", deploy_sklearn_model)
