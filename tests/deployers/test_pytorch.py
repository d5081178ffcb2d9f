"""PyTorch through deploy_pytorch_model on a real local cluster: TorchScript when the module compiles, else
its state_dict with a weightless structure; either way the same outputs as the module itself."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from clipper.admin import ClipperConnection
from clipper_admin.deployers.pytorch import deploy_pytorch_model
from tests.admin.conftest import predict_until
from tests.deployers.conftest import answered, model_dir, predict_deployed, same_numbers

torch = pytest.importorskip("torch")


class Scriptable(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))

    def forward(self, x):
        return self.layers(x)


class NotScriptable(torch.nn.Module):
    """torch.jit.script cannot compile a call into numpy, so this one is saved as a state_dict."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, width)

    def forward(self, x):
        return self.linear(x) * float(np.tanh(0.5))


def predict(model, inputs):
    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(inputs, dtype=np.float32)))
    return [json.dumps(row.tolist()) for row in out]


def expected(model, queries):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(queries.astype(np.float32))).numpy()


def test_scriptable_module_is_served_from_torchscript(cluster: ClipperConnection) -> None:
    torch.manual_seed(0)
    model = Scriptable()
    queries = np.random.default_rng(1).normal(size=(6, 4))
    outputs = predict_deployed(cluster, "ts", queries.tolist(), deploy_pytorch_model, predict, model)
    assert same_numbers(outputs, expected(model, queries))
    saved = model_dir(cluster, "ts")
    assert sorted(p.name for p in saved.iterdir()) == ["func.pkl", "metadata.json", "model.torchscript.pt"]
    metadata = json.loads((saved / "metadata.json").read_text())
    assert metadata["format"] == "torchscript"
    assert metadata["packages"] == {"torch": torch.__version__}


def test_unscriptable_module_is_saved_as_state_dict_without_weights_in_the_pickle(
    cluster: ClipperConnection,
) -> None:
    torch.manual_seed(0)
    model = NotScriptable(width=3)
    queries = np.random.default_rng(2).normal(size=(4, 4))
    outputs = predict_deployed(cluster, "sd", queries.tolist(), deploy_pytorch_model, predict, model)
    assert same_numbers(outputs, expected(model, queries))
    saved = model_dir(cluster, "sd")
    assert json.loads((saved / "metadata.json").read_text())["format"] == "torch-state-dict"
    structure = pickle.loads((saved / "module.pkl").read_bytes())
    assert all(p.is_meta for p in structure.parameters())  # the weights live only in the state_dict
    weights = torch.load(saved / "model.state_dict.pt", weights_only=True)
    assert torch.equal(weights["linear.weight"], model.linear.weight)


def test_create_endpoint_takes_clipper_keywords_and_a_declared_shape(cluster: ClipperConnection) -> None:
    from clipper_admin.deployers.pytorch import create_endpoint

    torch.manual_seed(0)
    model = Scriptable()

    def predict_grids(model, inputs):
        assert inputs.shape[1:] == (2, 2), inputs.shape  # one (batch, 2, 2) array, as input_shape declares
        return predict(model, inputs.reshape(len(inputs), 4))

    create_endpoint(
        clipper_conn=cluster,
        name="grid",
        input_type="doubles",
        func=predict_grids,
        pytorch_model=model,
        slo_micros=30_000_000,
        input_shape=[2, 2],
    )
    queries = np.random.default_rng(3).normal(size=(3, 2, 2))
    url = f"http://{cluster.get_query_addr()}/grid/predict"
    answer = predict_until(url, {"input_batch": queries.tolist()}, answered)
    assert answered(answer), answer
    outputs = [p["output"] for p in answer["batch_predictions"]]
    assert same_numbers(outputs, expected(model, queries.reshape(3, 4)))
