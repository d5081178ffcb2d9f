"""End to end on a real local cluster: a `json` app and a shaped `doubles` app, each with its closure."""

from __future__ import annotations

import pytest
import requests

from clipper.admin import ClipperConnection, ClipperException
from clipper.admin.deployers.python import create_endpoint, deploy_python_closure
from tests.admin import conftest as admin_fixtures
from tests.admin.conftest import predict_until

cluster = admin_fixtures.cluster  # one real local cluster for this module, as the admin tests start it


def url(conn: ClipperConnection, app: str) -> str:
    return f"http://{conn.get_query_addr()}/{app}/predict"


def served(answer: dict) -> bool:
    return answer.get("default") is False


def test_json_app_hands_the_function_decoded_values(cluster: ClipperConnection) -> None:
    def describe(inputs):  # a list of decoded JSON values: dicts stay dicts
        return [f"{type(x).__name__}:{x['n'] * 2 if isinstance(x, dict) else x}" for x in inputs]

    create_endpoint(cluster, "json-app", "json", describe, default_output="none")
    answer = predict_until(url(cluster, "json-app"), {"input": {"n": 21, "tags": ["a"]}}, served)
    assert answer["output"] == "dict:42"
    batch = requests.post(
        url(cluster, "json-app"), json={"input_batch": [{"n": 1}, "text", [1, 2], None]}, timeout=10
    ).json()
    assert [p["output"] for p in batch["batch_predictions"]] == [
        "dict:2",
        "str:text",
        "list:[1, 2]",
        "NoneType:None",
    ]
    assert cluster.get_app_info("json-app")["input_type"] == "json"


def test_shaped_doubles_app_hands_the_function_a_batch_by_shape_array(cluster: ClipperConnection) -> None:
    def shape_and_sums(inputs):  # one (batch, 2, 3) float64 array
        return [f"{inputs.shape}/{inputs.dtype}/{row.sum(axis=1).tolist()}" for row in inputs]

    create_endpoint(cluster, "grid-app", "doubles", shape_and_sums, default_output="none", input_shape=[2, 3])
    nested = [[1, 2, 3], [4, 5, 6]]
    answer = predict_until(url(cluster, "grid-app"), {"input": nested}, served)
    assert answer["output"] == "(1, 2, 3)/float64/[6.0, 15.0]"
    flat = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]  # a flat list of prod(shape) numbers, which takes the fast path
    batch = requests.post(url(cluster, "grid-app"), json={"input_batch": [nested, flat]}, timeout=10).json()
    outputs = {p["output"] for p in batch["batch_predictions"]}
    assert outputs <= {
        "(2, 2, 3)/float64/[6.0, 15.0]", "(2, 2, 3)/float64/[3.0, 6.0]",
        "(1, 2, 3)/float64/[6.0, 15.0]", "(1, 2, 3)/float64/[3.0, 6.0]",  # if the two were batched apart
    }, batch  # fmt: skip
    assert cluster.get_app_info("grid-app")["input_shape"] == [2, 3]
    assert cluster.get_model_info("grid-app", "1")["input_shape"] == [2, 3]


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        ({"input": [[1, 2], [3, 4]]}, "input has shape [2, 2] but the app's input_shape is [2, 3]"),
        ({"input": [[1, 2, 3], [4, 5]]}, "input has ragged nested lists but the app's input_shape is [2, 3]"),
        ({"input_batch": [[1, 2, 3, 4, 5, 6], [1, 2, 3]]}, "input_batch[1] has shape [3] but"),  # fast path
        ({"input": [1, 2, 3, 4, 5]}, "input has shape [5] but the app's input_shape is [2, 3]"),  # fast path
    ],
)
def test_shaped_app_refuses_other_shapes(cluster: ClipperConnection, body: dict, cause: str) -> None:
    if "grid-app" not in cluster.get_all_apps():
        create_endpoint(cluster, "grid-app", "doubles", lambda xs: ["x"] * len(xs), input_shape=[2, 3])
    r = requests.post(url(cluster, "grid-app"), json=body, timeout=10)
    assert r.status_code == 400 and cause in r.json()["cause"], r.text


def test_models_link_only_to_apps_of_their_shape(cluster: ClipperConnection) -> None:
    cluster.register_application("tall-app", "doubles", "none", 100_000, input_shape=[3, 2])
    deploy_python_closure(cluster, "wide", 1, "doubles", lambda xs: ["x"] * len(xs), input_shape=[2, 3])
    with pytest.raises(ClipperException, match=r"incompatible input_shape \[2, 3\].*input_shape \[3, 2\]"):
        cluster.link_model_to_app("tall-app", "wide")
    cluster.register_application("flat-app", "doubles", "none", 100_000)
    with pytest.raises(ClipperException, match=r"incompatible input_shape \[2, 3\].*input_shape None"):
        cluster.link_model_to_app("flat-app", "wide")
    with pytest.raises(ClipperException, match="input_shape: only numeric input types"):
        cluster.register_application("bad-app", "json", "none", 100_000, input_shape=[3])
    with pytest.raises(ClipperException, match="input_shape is for numeric input types"):
        deploy_python_closure(cluster, "bad-model", 1, "strings", lambda xs: xs, input_shape=[3])
    assert "bad-model" not in {m.split(":")[0] for m in cluster.get_all_models()}
