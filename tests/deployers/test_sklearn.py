"""scikit-learn through deploy_sklearn_model on a real local cluster: skops on disk, the same predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clipper.admin import ClipperConnection
from clipper_admin.deployers.sklearn import deploy_sklearn_model
from tests.deployers.conftest import model_dir, predict_deployed, same_numbers

pytest.importorskip("sklearn")
pytest.importorskip("skops")
from sklearn.linear_model import LogisticRegression


def test_sklearn_model_answers_as_its_own_predict_proba(cluster: ClipperConnection) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    model = LogisticRegression().fit(x, (x[:, 0] + x[:, 1] > 0).astype(int))
    queries = rng.normal(size=(5, 4))

    def predict(model, inputs):
        return [json.dumps(float(p)) for p in model.predict_proba(inputs)[:, 1]]

    outputs = predict_deployed(cluster, "sk", queries.tolist(), deploy_sklearn_model, predict, model)
    assert same_numbers(outputs, model.predict_proba(queries)[:, 1])
    saved = model_dir(cluster, "sk")
    assert (saved / "model.skops").is_file() and not (saved / "model.joblib").exists()
    metadata = json.loads((saved / "metadata.json").read_text())
    assert metadata["format"] == "skops"
    assert set(metadata["packages"]) == {"scikit-learn", "skops"}
