"""Property tests of the predict parse path: whatever the body, QueryApp answers 200 or a 4xx with
Clipper's JSON error body, and never a 5xx or an escaping exception. Runs in well under a minute."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipper.frontends.query_http import QueryApp
from clipper.types import InputType
from tests.frontends.query_app import call, error_of, make_app

EXAMPLES = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TYPES = [t.wire_name for t in InputType]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
# Bodies shaped like predict requests, so the fuzzing reaches past the first type check.
inputs = (
    st.lists(st.integers(-(2**40), 2**40) | st.floats(), max_size=8)
    | st.text(max_size=16)
    | st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
    | json_values
)
predict_bodies = st.fixed_dictionaries(
    {},
    optional={
        "input": inputs,
        "input_batch": st.lists(inputs, max_size=6) | json_values,
        "version": st.none() | st.text(max_size=4) | json_values,
    },
)


@pytest.fixture(scope="module")
def app() -> Iterator[QueryApp]:
    loop = asyncio.new_event_loop()
    try:
        yield make_app(loop, max_inputs=4)
    finally:
        loop.close()


def check(app: QueryApp, input_type: str, body: bytes) -> None:
    response = call(app, "POST", f"/{input_type}/predict", body)
    status = response[0]
    assert status == 200 or 400 <= status < 500, (status, body)
    if status == 200:
        assert isinstance(orjson.loads(response[2]), dict)
    else:
        error_of(response)


def dumps(value: Any) -> bytes:
    """JSON as Python writes it, NaN, Infinity and huge integers included (orjson refuses those)."""
    return json.dumps(value).encode()


@EXAMPLES
@given(input_type=st.sampled_from(TYPES), body=predict_bodies)
def test_predict_shaped_json(app: QueryApp, input_type: str, body: dict[str, Any]) -> None:
    check(app, input_type, dumps(body))


@EXAMPLES
@given(input_type=st.sampled_from(TYPES), body=json_values)
def test_any_json(app: QueryApp, input_type: str, body: Any) -> None:
    check(app, input_type, dumps(body))


@EXAMPLES
@given(input_type=st.sampled_from(TYPES), body=st.binary(max_size=64))
def test_any_bytes(app: QueryApp, input_type: str, body: bytes) -> None:
    check(app, input_type, body)


@EXAMPLES
@given(
    input_type=st.sampled_from(TYPES),
    body=predict_bodies,
    cut=st.integers(min_value=0, max_value=200),
    junk=st.binary(max_size=4),
)
def test_damaged_predict_json(
    app: QueryApp, input_type: str, body: dict[str, Any], cut: int, junk: bytes
) -> None:
    """A valid-looking body with bytes cut or spliced in: the JSON errors, not the server."""
    raw = dumps(body)
    check(app, input_type, raw[:cut] + junk + raw[cut:])
