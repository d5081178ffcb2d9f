"""Deploy a LightGBM model (ours; Clipper 0.4 had none) as the booster's text model file.
The runtime hands `func` a `lightgbm.Booster` (a scikit-learn wrapper is saved as its fitted booster).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clipper.admin.connection import ClipperConnection
from clipper.admin.deployers.framework import ModelSaver, booster_saver, deploy_framework_model
from clipper.runtime.frameworks import ModelFormat


def lightgbm_saver(lightgbm_model: Any) -> ModelSaver:
    """Save a `lightgbm.Booster` or a fitted scikit-learn `LGBMModel` as the booster's text file."""
    booster = getattr(lightgbm_model, "booster_", lightgbm_model)
    return booster_saver(booster, ModelFormat.LIGHTGBM_TEXT, "lightgbm")


def deploy_lightgbm_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[[Any, Any], Any],
    lightgbm_model: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Deploy `lightgbm_model`; replicas load the booster once and answer with `func(booster, inputs)`."""
    options = (base_image, labels, registry, num_replicas, batch_size, pkgs_to_install)
    deploy_framework_model(
        clipper_conn, name, version, input_type, func, lightgbm_saver(lightgbm_model), *options
    )
