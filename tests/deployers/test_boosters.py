"""XGBoost and LightGBM through their deployers on a real local cluster: the booster's own file format, and
the same predictions as the booster in this process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clipper.admin import ClipperConnection
from tests.deployers.conftest import model_dir, predict_deployed, same_numbers


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 4))
    return x, (x[:, 0] - x[:, 2] > 0).astype(float), rng.normal(size=(6, 4))


def test_xgboost_model_is_saved_as_booster_json(cluster: ClipperConnection) -> None:
    xgboost = pytest.importorskip("xgboost")
    from clipper_admin.deployers.xgboost import deploy_xgboost_model

    x, y, queries = _data()
    model = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(x, y)

    def predict(booster, inputs):
        return [json.dumps(float(p)) for p in booster.predict(xgboost.DMatrix(np.asarray(inputs)))]

    outputs = predict_deployed(cluster, "xgb", queries.tolist(), deploy_xgboost_model, predict, model)
    assert same_numbers(outputs, model.predict_proba(queries)[:, 1])
    saved = model_dir(cluster, "xgb") / "model.xgboost.json"
    assert "learner" in json.loads(saved.read_text())


def test_lightgbm_model_is_saved_as_booster_text(cluster: ClipperConnection) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    from clipper_admin.deployers.lightgbm import deploy_lightgbm_model

    x, y, queries = _data()
    booster = lightgbm.train(
        {"objective": "binary", "verbose": -1}, lightgbm.Dataset(x, y), num_boost_round=8
    )

    def predict(booster, inputs):
        return [json.dumps(float(p)) for p in booster.predict(np.asarray(inputs))]

    outputs = predict_deployed(cluster, "lgbm", queries.tolist(), deploy_lightgbm_model, predict, booster)
    assert same_numbers(outputs, booster.predict(queries))
    assert (model_dir(cluster, "lgbm") / "model.lightgbm.txt").read_text().startswith("tree")
