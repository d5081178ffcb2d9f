"""Deploy a LightGBM model (ours; Clipper 0.4 had none) as the booster's text model file.
The runtime hands `func` a `lightgbm.Booster` (a scikit-learn wrapper is saved as its fitted booster).
"""

from __future__ import annotations

from typing import Any

from clipper.admin.deployers.clipper_api import framework_deployer, framework_endpoint
from clipper.admin.deployers.framework import ModelSaver, booster_saver
from clipper.runtime.frameworks import ModelFormat


def lightgbm_saver(lightgbm_model: Any) -> ModelSaver:
    """Save a `lightgbm.Booster` or a fitted scikit-learn `LGBMModel` as the booster's text file."""
    booster = getattr(lightgbm_model, "booster_", lightgbm_model)
    return booster_saver(booster, ModelFormat.LIGHTGBM_TEXT, "lightgbm")


deploy_lightgbm_model = framework_deployer(__name__, "lightgbm_model", lightgbm_saver)
create_endpoint = framework_endpoint(__name__, "lightgbm_model", deploy_lightgbm_model)
