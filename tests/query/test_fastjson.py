"""The simdjson fast path gives exactly what the general parser gives, or steps aside."""

import orjson
import pytest

from clipper.query.fastjson import batch_length, parse_doubles
from clipper.query.inputs import TooManyInputs, parse_request
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


def test_a_batch_over_max_inputs_raises_before_conversion_and_batch_length_counts_exactly():
    """The fast path refuses an over-long batch itself (not None: the general path would decode it all)."""
    raw = orjson.dumps({"input_batch": [[1.0], [2.0], [3.0]]})
    with pytest.raises(TooManyInputs, match="has 3 inputs"):
        parse_doubles(raw, max_inputs=2)
    assert parse_doubles(raw, max_inputs=3) is not None
    assert batch_length(raw) == 3
    assert batch_length(b'{"input_batch": [], "v": "[[["}') == 0
    for other in (b'{"input": [1]}', b"[1, 2]", b'{"input_batch": 1}', b"{bad"):
        assert batch_length(other) is None
