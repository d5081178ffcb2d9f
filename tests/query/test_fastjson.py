"""The simdjson fast path gives exactly what the general parser gives, or steps aside."""

import orjson
import pytest

from clipper.query.fastjson import parse_doubles
from clipper.query.inputs import parse_request
from clipper.types import InputType


@pytest.mark.parametrize(
    "body",
    [
        {"input": [1.0, 2.5, -3e-5]},
        {"input": [1, 2, 3]},
        {"input": []},
        {"input": [0.5] * 784, "version": "2"},
        {"input_batch": [[1.0], [2.0, 3.0], []]},
        {"input_batch": []},
        {"input": [1.0], "ignored": {"x": 1}},
    ],
)
def test_same_bytes_as_the_general_parser(body):
    assert parse_doubles(orjson.dumps(body)) == parse_request(body, InputType.DOUBLES)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"input": [1.0, true]}',
        b'{"input": [1.0, "x"]}',
        b'{"input": [1.0, [2.0]]}',
        b'{"input_batch": [[1.0, [2.0]]]}',
        b'{"input": [1.0], "other": [2]}',
        b'{"input": "s"}',
        b'{"input": [1.0], "version": 2}',
        b'{"input_batch": [[1.0], "x"]}',
        b'{"nothing": 1}',
        b"[1.0]",
        b'{"input": [1.0',
    ],
)
def test_anything_unusual_takes_the_general_path(raw):
    assert parse_doubles(raw) is None
