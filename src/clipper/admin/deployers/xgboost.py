"""Deploy an XGBoost model (ours; Clipper 0.4 had none) as the booster's JSON, XGBoost's portable format.
The runtime hands `func` an `xgboost.Booster` (a scikit-learn wrapper is saved as its booster).
"""

from __future__ import annotations

from typing import Any

from clipper.admin.deployers.clipper_api import framework_deployer, framework_endpoint
from clipper.admin.deployers.framework import ModelSaver, booster_saver
from clipper.runtime.frameworks import ModelFormat


def xgboost_saver(xgboost_model: Any) -> ModelSaver:
    """Save an `xgboost.Booster` or scikit-learn `XGBModel` as the booster's JSON."""
    booster = xgboost_model.get_booster() if hasattr(xgboost_model, "get_booster") else xgboost_model
    return booster_saver(booster, ModelFormat.XGBOOST_JSON, "xgboost")


deploy_xgboost_model = framework_deployer(__name__, "xgboost_model", xgboost_saver)
create_endpoint = framework_endpoint(__name__, "xgboost_model", deploy_xgboost_model)
