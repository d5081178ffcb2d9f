"""The `/v2` routes (Open Inference Protocol) with hand-made requests: bad ones get the protocol's
`{"error"}` with a 4xx, on a real frontend; the tensor rules (shapes, datatypes, binary data) in process."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import orjson
import pytest
import requests

from clipper.frontends.http1 import Response
from clipper.frontends.query_http import QueryApp
from clipper.query.processor import AppRoute
from clipper.types import InputType
from tests.frontends.conftest import QueryCluster
from tests.frontends.query_app import make_app


def tensor(datatype: str, shape: list[int], data: Any = None, **extra: Any) -> dict[str, Any]:
    out = {"name": "input", "datatype": datatype, "shape": shape, **extra}
    if data is not None:
        out["data"] = data
    return out


def body(*tensors: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(tensors), **extra})


def test_bad_requests_get_the_protocols_error(cluster: QueryCluster) -> None:
    cluster.model("m")
    cluster.container("m", "sum_inputs")
    cluster.app("a", "doubles", "m")
    url = f"{cluster.url}/v2/models"
    good = tensor("FP64", [2, 2], [1, 2, 3, 4])
    cases: list[tuple[str, bytes, int, str]] = [
        ("a", body(tensor("FP32", [2, 2], [1, 2, 3, 4])), 400, "datatype is 'FP32' but the model takes FP64"),
        ("a", body(tensor("FP64", [2, 3], [1, 2, 3, 4])), 400, "holds 4 elements but shape [2, 3] needs 6"),
        (
            "a",
            body(tensor("FP64", [4], [1, 2, 3, 4])),
            400,
            "shape is [4] but the model takes [batch, length]",
        ),
        ("a", body(tensor("FP64", [1, 2], [True, 2])), 400, "holds a boolean"),
        ("a", body(tensor("FP64", [1, 2], ["x", 2])), 400, "does not fit datatype FP64"),
        ("a", body(good, good), 400, "exactly one tensor"),
        ("a", b'{"inputs": [', 400, "Error parsing JSON"),
        ("a", body(good, outputs=[{"name": "probabilities"}]), 400, "outputs[0].name must be one of"),
        ("nope", body(good), 404, "No application named 'nope'"),
        ("a/versions/9", body(good), 404, "version: 9 does not exist for model m"),
        ("a", body(tensor("FP64", [20_000, 1], [0] * 20_000)), 413, "has 20000 rows"),
    ]
    for model, raw, status, message in cases:
        r = requests.post(f"{url}/{model}/infer", data=raw, timeout=10)
        assert r.status_code == status, (model, raw[:80], r.text)
        assert list(r.json()) == ["error"] and message in r.json()["error"], r.text
    assert requests.get(f"{url}/nope/ready", timeout=10).status_code == 404
    r = requests.post(f"{url}/a/infer", data=body(good), timeout=10)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == ["3.0", "7.0"]


@pytest.fixture
async def app() -> QueryApp:
    """A QueryApp in process whose apps have no model (answered at once with their default)."""
    query = make_app(asyncio.get_running_loop(), max_inputs=8)
    processor = query.processor
    processor.set_app(AppRoute("image", InputType.FLOATS, b'"none"', slo_ns=10**9, input_shape=(2, 3)))
    processor.set_app(AppRoute("small", InputType.BYTES, b"-1", slo_ns=10**9, input_shape=(2,)))
    return query


def infer(app: QueryApp, model: str, raw: bytes, header_length: int | None = None) -> Response:
    answers: list[Response] = []
    header = None if header_length is None else str(header_length).encode()
    app.handle("POST", f"/v2/models/{model}/infer", raw, answers.append, None, header)
    assert len(answers) == 1
    return answers[0]


def outputs(response: Response) -> dict[str, Any]:
    status, _, raw = response
    assert status == 200, raw
    return {o["name"]: o for o in orjson.loads(raw)["outputs"]}


async def test_shaped_apps_take_the_declared_shape(app: QueryApp) -> None:
    answers: list[Response] = []
    app.handle("GET", "/v2/models/image", b"", answers.append, None)
    meta = orjson.loads(answers[0][2])
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 2, 3]}]
    nested = [[[1, 2, 3], [4, 5, 6]]] * 2
    out = outputs(infer(app, "image", body(tensor("FP32", [2, 2, 3], nested))))
    assert out["output"]["data"] == ["none", "none"] and out["default"]["data"] == [True, True]
    flat = list(range(12))
    assert outputs(infer(app, "image", body(tensor("FP32", [2, 2, 3], flat))))["output"]["shape"] == [2]
    status, _, raw = infer(app, "image", body(tensor("FP32", [2, 6], flat)))
    assert status == 400 and b"shape is [2, 6] but the model takes [2, 2, 3]" in raw
    status, _, raw = infer(app, "image", body(tensor("FP32", [1, 2, 3], [1e39] * 6)))
    assert status == 400 and b"out of its range" in raw
    status, _, raw = infer(app, "small", body(tensor("INT8", [1, 2], [127, 128])))  # Clipper's bytes: int8
    assert status == 400 and b"INT8" in raw
    assert outputs(infer(app, "small", body(tensor("INT8", [1, 2], [127, -128]))))["output"]["data"] == ["-1"]


async def test_binary_tensor_data_both_ways(app: QueryApp) -> None:
    """Binary inputs (raw little-endian numbers; BYTES as 4-byte length + bytes) and binary outputs."""
    head = body(tensor("FP32", [1, 2, 3], parameters={"binary_data_size": 24}),
                parameters={"binary_data_output": True})  # fmt: skip
    status, headers, raw = infer(app, "image", head + struct.pack("<6f", *range(6)), len(head))
    assert status == 200
    length = int(dict(headers)["inference-header-content-length"])
    response = orjson.loads(raw[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in response["outputs"]]
    assert raw[length:] == struct.pack("<I", 4) + b"none" + b"\x01" and sizes == [8, 1]

    strings = [b"abc", "é".encode(), b""]
    data = b"".join(struct.pack("<I", len(s)) + s for s in strings)
    head = body(tensor("BYTES", [3, 1], parameters={"binary_data_size": len(data)}))
    assert outputs(infer(app, "strings", head + data, len(head)))["default"]["data"] == [True] * 3

    short = body(tensor("BYTES", [1], parameters={"binary_data_size": 7}))
    for raw, length, message in [
        (short + struct.pack("<I", 10) + b"abc", len(short), b"binary data ends inside an element"),
        (head + data + b"xx", len(head), b"the inputs use"),
        (head + data, len(head) + 9999, b"not a length within"),
        (head, len(head), b"exceeds the binary data"),
    ]:
        status, _, answer = infer(app, "strings", raw, length)
        assert status == 400 and message in answer, answer


async def test_json_apps_take_json_documents(app: QueryApp) -> None:
    good = body(tensor("BYTES", [2], ['{"a": [1, 2]}', "3"]))
    assert outputs(infer(app, "json", good))["output"]["data"] == ["none", "none"]
    status, _, raw = infer(app, "json", body(tensor("BYTES", [1], ["{a"])))
    assert status == 400 and b"not a JSON document" in raw
    status, _, raw = infer(app, "strings", body(tensor("BYTES", [1, 2], ["a", "b"])))
    assert status == 400 and b"one element per row" in raw


async def test_health_follows_the_frontends_state(app: QueryApp) -> None:
    def get(path: str) -> tuple[int, Any]:
        answers: list[Response] = []
        app.handle("GET", path, b"", answers.append, None)
        return answers[0][0], orjson.loads(answers[0][2])

    assert get("/v2/health/ready") == (200, {"ready": True})
    app.draining = True
    assert get("/v2/health/ready") == (400, {"ready": False})  # the protocol's "false" is a 4xx
    assert get("/v2/health/live") == (200, {"live": True})
    assert get("/v2/models/image/versions/1")[0] == 404  # no model linked: no version to pin
    assert get("/v2/models/image/nonsense")[0] == 404
