"""ONNX through onnxruntime on a real local cluster: a scikit-learn model converted with skl2onnx, and
Clipper 0.4's entry point that exports a PyTorch model; each answers as onnxruntime (and torch) do locally."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clipper.admin import ClipperConnection, ClipperException
from clipper_admin.deployers import onnx as onnx_deployers
from tests.deployers.conftest import model_dir, predict_deployed, same_numbers

onnxruntime = pytest.importorskip("onnxruntime")


def predict(session, inputs):
    name = session.get_inputs()[0].name
    scores = session.run(None, {name: np.asarray(inputs, dtype=np.float32)})[0]
    return [json.dumps(np.asarray(row, dtype=np.float64).tolist()) for row in scores]


def test_skl2onnx_model_answers_as_onnxruntime_does(cluster: ClipperConnection) -> None:
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 5))
    model = LinearRegression().fit(x, x @ np.arange(5.0))
    onnx_model = skl2onnx.to_onnx(model, x[:1].astype(np.float32))  # the one-call conversion
    queries = rng.normal(size=(5, 5))
    outputs = predict_deployed(
        cluster, "skonnx", queries.tolist(), onnx_deployers.deploy_onnx_model, predict, onnx_model
    )
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert same_numbers(outputs, session.run(None, {"X": queries.astype(np.float32)})[0])
    assert same_numbers(outputs, model.predict(queries).reshape(-1, 1))
    metadata = json.loads((model_dir(cluster, "skonnx") / "metadata.json").read_text())
    assert metadata["format"] == "onnx"
    assert set(metadata["packages"]) == {"onnxruntime"}  # no training framework needed to serve it


def test_clipper_pytorch_entry_point_exports_to_onnx(cluster: ClipperConnection) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    queries = np.random.default_rng(4).normal(size=(7, 3))
    example = torch.zeros(1, 3)
    outputs = predict_deployed(
        cluster, "ptonnx", queries.tolist(), onnx_deployers.deploy_pytorch_model, example, predict, model
    )
    with torch.no_grad():
        assert same_numbers(outputs, model(torch.from_numpy(queries.astype(np.float32))).numpy())
    assert (model_dir(cluster, "ptonnx") / "model.onnx").is_file()


def test_a_file_that_is_not_onnx_is_refused_before_anything_starts(
    cluster: ClipperConnection, tmp_path
) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ClipperException, match="onnxruntime cannot load the ONNX model"):
        onnx_deployers.deploy_onnx_model(cluster, "bogus", 1, "doubles", predict, bogus)
    assert cluster.get_num_replicas("bogus", "1") == 0
