"""A real Open Inference Protocol client (tritonclient's HTTP client) against a real query frontend with
model containers: it gets the answers Clipper's JSON API gives for the same app, single and batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from clipper.query.answers import embed_json
from tests.frontends.conftest import QueryCluster

httpclient = pytest.importorskip("tritonclient.http")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException


def as_clipper(text: bytes | str) -> Any:
    """An OIP `output` element as Clipper's JSON API shows that output (JSON if it parses, else text)."""
    raw = text.encode() if isinstance(text, str) else text
    return orjson.loads(embed_json(raw))


def oip_client(cluster: QueryCluster) -> Any:
    return httpclient.InferenceServerClient(url=cluster.url.removeprefix("http://"), network_timeout=30)


def infer(
    client: Any, model: str, array: np.ndarray, datatype: str, *, binary: bool, version: str = ""
) -> tuple[list[Any], list[bool], Any]:
    """(outputs as Clipper shows them, default flags, the raw result) of one infer call."""
    tensor = httpclient.InferInput("input", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("output", "default")]
    result = client.infer(model, [tensor], model_version=version, outputs=outputs, request_id="r-1")
    texts = result.as_numpy("output")
    return [as_clipper(t) for t in texts], [bool(d) for d in result.as_numpy("default")], result


def clipper_answers(cluster: QueryCluster, app: str, rows: list[Any]) -> tuple[list[Any], list[bool]]:
    """The same rows through Clipper's JSON API: one `input` request and one `input_batch` request."""
    single = cluster.post(app, {"input": rows[0]}).json()
    batch = cluster.post(app, {"input_batch": rows}).json()["batch_predictions"]
    assert single["output"] == batch[0]["output"]
    return [p["output"] for p in batch], [p["default"] for p in batch]


@pytest.fixture
def served(cluster: QueryCluster) -> QueryCluster:
    """Apps of three input types backed by containers, and one app with no model (default answers)."""
    cluster.model("summer", input_type="doubles")
    cluster.container("summer", "sum_inputs")
    cluster.app("sums", "doubles", "summer")
    cluster.model("ints", input_type="integers")
    cluster.container("ints", "sum_inputs", input_type="integers")
    cluster.app("isums", "integers", "ints")
    cluster.model("echo", input_type="strings")
    cluster.container("echo", "echo_strings", input_type="strings")
    cluster.app("echoes", "strings", "echo")
    cluster.app("nomodel", "floats", default="no answer")
    return cluster


@pytest.mark.parametrize("binary", [True, False], ids=["binary-data", "json-data"])
def test_client_gets_the_json_apis_answers(served: QueryCluster, binary: bool) -> None:
    client = oip_client(served)
    doubles = np.array([[1.5, 2.0, 3.25], [4.0, 5.0, 6.0], [-1.0, 0.0, 1.0]])
    got, defaults, result = infer(client, "sums", doubles, "FP64", binary=binary)
    want, want_defaults = clipper_answers(served, "sums", doubles.tolist())
    assert got == want == [6.75, 15.0, 0.0]
    assert defaults == want_defaults == [False, False, False]
    response = result.get_response()
    assert response["model_name"] == "sums" and response["model_version"] == "1" and response["id"] == "r-1"
    assert all(("binary_data_size" in o.get("parameters", {})) == binary for o in response["outputs"])

    one, _, _ = infer(client, "sums", doubles[:1], "FP64", binary=binary)  # a single row
    assert one == [6.75]

    ints = np.array([[1, 2], [2_000_000_000, 100_000_000]], dtype=np.int32)
    got, _, _ = infer(client, "isums", ints, "INT32", binary=binary)
    assert got == clipper_answers(served, "isums", ints.tolist())[0]

    texts = np.array(["héllo", "", "{not json"], dtype=object)
    got, defaults, _ = infer(client, "echoes", texts, "BYTES", binary=binary)
    assert got == clipper_answers(served, "echoes", list(texts))[0] == ["héllo", "", "{not json"]

    floats = np.zeros((2, 4), dtype=np.float32)
    got, defaults, _ = infer(client, "nomodel", floats, "FP32", binary=binary)
    want, want_defaults = clipper_answers(served, "nomodel", floats.tolist())
    assert got == want == ["no answer", "no answer"]
    assert defaults == want_defaults == [True, True]


def test_client_reads_health_and_metadata(served: QueryCluster) -> None:
    client = oip_client(served)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("sums") and client.is_model_ready("sums", "1")
    assert not client.is_model_ready("nomodel")  # no replica serves it
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = client.get_model_metadata("sums")
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, -1]}]
    assert [o["name"] for o in meta["outputs"]] == ["output", "default"]
    assert client.get_model_metadata("echoes")["inputs"][0] == {
        "name": "input",
        "datatype": "BYTES",
        "shape": [-1],
    }
    assert client.get_model_metadata("isums")["inputs"][0]["datatype"] == "INT32"
    with pytest.raises(InferenceServerException, match="No application named 'nope'"):
        client.get_model_metadata("nope")


def test_version_in_the_url_pins_the_version(cluster: QueryCluster) -> None:
    """`/versions/{v}/infer` answers from that version, as Clipper's `"version"` field does."""
    cluster.model("m", "1")
    cluster.container("m", "sum_inputs", "1")
    cluster.model("m", "2")
    cluster.container("m", "pid", "2")
    cluster.set_version("m", "2")
    cluster.app("a", "doubles", "m")
    client = oip_client(cluster)
    rows = np.array([[1.0, 2.0]])
    pinned, _, result = infer(client, "a", rows, "FP64", binary=True, version="1")
    assert pinned == [3.0] and result.get_response()["model_version"] == "1"
    current, _, result = infer(client, "a", rows, "FP64", binary=True)
    assert current == [cluster.post("a", {"input": [1.0, 2.0]}).json()["output"]]
    assert current != [3.0] and result.get_response()["model_version"] == "2"
    with pytest.raises(InferenceServerException, match="version: 7 does not exist") as e:
        infer(client, "a", rows, "FP64", binary=True, version="7")
    assert e.value.status() == "404"


def test_client_sends_the_token(make_cluster: Any) -> None:
    cluster = make_cluster(CLIPPER_QUERY_TOKEN="s3cret")
    client = oip_client(cluster)
    assert client.is_server_ready()  # the health probes need no token, as /health
    with pytest.raises(InferenceServerException) as e:
        client.get_server_metadata()
    assert e.value.status() == "401"
    assert client.get_server_metadata(headers={"Authorization": "Bearer s3cret"})["name"] == "clipper"
