"""Deploy an XGBoost model (ours; Clipper 0.4 had none) as the booster's JSON, XGBoost's portable format.
The runtime hands `func` an `xgboost.Booster` (a scikit-learn wrapper is saved as its booster).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clipper.admin.connection import ClipperConnection
from clipper.admin.deployers.framework import ModelSaver, booster_saver, deploy_framework_model
from clipper.runtime.frameworks import ModelFormat


def xgboost_saver(xgboost_model: Any) -> ModelSaver:
    """Save an `xgboost.Booster` or scikit-learn `XGBModel` as the booster's JSON."""
    booster = xgboost_model.get_booster() if hasattr(xgboost_model, "get_booster") else xgboost_model
    return booster_saver(booster, ModelFormat.XGBOOST_JSON, "xgboost")


def deploy_xgboost_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[[Any, Any], Any],
    xgboost_model: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Deploy `xgboost_model`; replicas load the booster once and answer with `func(booster, inputs)`."""
    options = (base_image, labels, registry, num_replicas, batch_size, pkgs_to_install)
    deploy_framework_model(
        clipper_conn, name, version, input_type, func, xgboost_saver(xgboost_model), *options
    )
