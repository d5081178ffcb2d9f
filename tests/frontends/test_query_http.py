"""QueryApp in process with a real QueryProcessor: the bearer token and the per-request input cap."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest

from clipper.frontends.query_http import QueryApp
from clipper.settings import QueryFrontendSettings
from tests.frontends.query_app import call, error_of, make_app

TOKEN = "s3cret-token"
BODY = b'{"input": [1.0, 2.0]}'


@pytest.fixture
async def guarded() -> QueryApp:
    return make_app(asyncio.get_running_loop(), query_token=TOKEN)


@pytest.mark.parametrize(
    "authorization",
    [None, b"", b"Bearer", b"Bearer wrong", b"Basic " + base64.b64encode(TOKEN.encode()), TOKEN.encode(),
     b"Bearer " + TOKEN.encode() + b"x"],
    ids=["none", "empty", "no-token", "wrong", "basic", "no-scheme", "longer"],
)  # fmt: skip
async def test_predict_without_the_bearer_token_is_401(
    guarded: QueryApp, authorization: bytes | None
) -> None:
    """Missing or wrong credentials get Clipper's JSON error shape, 401 and a Bearer challenge."""
    response = call(guarded, "POST", "/doubles/predict", BODY, authorization)
    status, headers, _ = response
    assert status == 401
    assert ("www-authenticate", "Bearer") in headers
    assert error_of(response)["error"] == "Unauthorized"


@pytest.mark.parametrize("scheme", [b"Bearer ", b"bearer ", b"BEARER  "])
async def test_predict_with_the_bearer_token_is_served(guarded: QueryApp, scheme: bytes) -> None:
    """The scheme is case-insensitive (RFC 9110 §11.1); the token is compared exactly."""
    status, _, body = call(guarded, "POST", "/doubles/predict", BODY, scheme + TOKEN.encode())
    assert status == 200
    assert orjson.loads(body)["output"] == "none"


async def test_health_stays_open_and_metrics_and_update_need_the_token(guarded: QueryApp) -> None:
    """Probes need no secret; metrics and feedback do."""
    assert call(guarded, "GET", "/health")[0] == 200
    assert call(guarded, "HEAD", "/health")[0] == 200
    assert call(guarded, "GET", "/metrics")[0] == 401
    assert call(guarded, "POST", "/doubles/update", BODY)[0] == 401
    good = b"Bearer " + TOKEN.encode()
    assert call(guarded, "GET", "/metrics", authorization=good)[0] == 200
    assert call(guarded, "POST", "/doubles/update", BODY, good)[0] == 501


async def test_without_a_token_everything_is_open() -> None:
    app = make_app(asyncio.get_running_loop())
    assert call(app, "POST", "/doubles/predict", BODY)[0] == 200
    assert call(app, "GET", "/metrics")[0] == 200


# --- per-request input cap ---


def batch(input_type: str, n: int, item: object = None) -> bytes:
    default = {"doubles": [1.5], "floats": [1.5], "integers": [1], "strings": "s", "bytes": "AA=="}
    return orjson.dumps({"input_batch": [default[input_type] if item is None else item] * n})


@pytest.mark.parametrize("input_type", ["doubles", "floats", "integers", "strings", "bytes"])
@pytest.mark.parametrize("n", [4, 50_000])
async def test_batch_over_max_inputs_is_413_naming_the_limit(input_type: str, n: int) -> None:
    """Over the cap: 413 (no Retry-After: the same batch can never pass), the limit in the cause.
    At the cap: served."""
    app = make_app(asyncio.get_running_loop(), max_inputs=3)
    response = call(app, "POST", f"/{input_type}/predict", batch(input_type, n))
    status, headers, _ = response
    assert status == 413
    assert not any(name == "retry-after" for name, _ in headers)
    cause = error_of(response)["cause"]
    assert f"has {n} inputs" in cause and "at most 3" in cause and "max_inputs_per_request" in cause
    status, _, body = call(app, "POST", f"/{input_type}/predict", batch(input_type, 3))
    assert status == 200
    assert len(orjson.loads(body)["batch_predictions"]) == 3


async def test_the_cap_is_checked_before_any_input_is_converted() -> None:
    """A batch over the cap is refused for its size even when its entries would be invalid inputs."""
    app = make_app(asyncio.get_running_loop(), max_inputs=3)
    assert call(app, "POST", "/doubles/predict", batch("doubles", 4, item="not numbers"))[0] == 413
    assert call(app, "POST", "/strings/predict", batch("strings", 4, item=[1]))[0] == 413
    assert call(app, "POST", "/doubles/predict", batch("doubles", 3, item="not numbers"))[0] == 400


async def test_brackets_outside_the_inputs_do_not_count_as_inputs() -> None:
    """The byte pre-count only bounds the batch: a body with many `[` in a string is counted exactly."""
    app = make_app(asyncio.get_running_loop(), max_inputs=3)
    body = orjson.dumps({"input_batch": [[1.0], [2.0]], "version": None, "note": "[" * 100})
    status, _, reply = call(app, "POST", "/doubles/predict", body)
    assert status == 200
    assert len(orjson.loads(reply)["batch_predictions"]) == 2


@pytest.mark.parametrize(
    ("path", "body", "cause"),
    [
        ("/integers/predict", b'{"input": [1, 99999999999999999999]}', "outside the int32 range"),
        ("/integers/predict", b'{"input": [2147483648]}', "2147483648 is outside the int32 range"),
        ("/integers/predict", b'{"input": [1, 2.5]}', "2.5 is not an integer"),
        ("/strings/predict", b'{"input": "caf\xe9"}', "not valid UTF-8 (byte 0xe9 at offset 14)"),
    ],
)
async def test_errors_name_the_real_cause(path: str, body: bytes, cause: str) -> None:
    """Not Python's words ('int too large to convert to C long') or orjson's ('surrogates not allowed')."""
    response = call(make_app(asyncio.get_running_loop()), "POST", path, body)
    assert response[0] == 400
    message = error_of(response)["cause"]
    assert cause in message and "C long" not in message and "surrogates" not in message


def test_a_frame_cap_below_a_full_batch_is_refused_at_start() -> None:
    """Every full batch's answer would be dropped as over the cap; say so before serving anything."""
    with pytest.raises(ValueError, match="rpc_max_message_frames"):
        QueryFrontendSettings(max_batch_size_entries=1024, rpc_max_message_frames=1000)
    QueryFrontendSettings(max_batch_size_entries=1024, rpc_max_message_frames=1030)
