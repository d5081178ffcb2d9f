"""Parsing predict bodies into container input bytes, per input type."""

import base64
import struct

import pytest

from clipper.errors import InvalidInput
from clipper.query.inputs import TooManyInputs, parse_request
from clipper.types import InputType


def test_doubles_accept_any_json_number():
    inputs, batch, version = parse_request({"input": [1, 2.5]}, InputType.DOUBLES)
    assert inputs == [struct.pack("<2d", 1.0, 2.5)]
    assert (batch, version) == (False, None)


def test_floats_and_integers_are_packed_little_endian():
    assert parse_request({"input": [1.5]}, InputType.FLOATS)[0] == [struct.pack("<f", 1.5)]
    assert parse_request({"input": [-3, 7]}, InputType.INTEGERS)[0] == [struct.pack("<2i", -3, 7)]


def test_integers_reject_fractions_and_overflow():
    with pytest.raises(InvalidInput, match="not of type int"):
        parse_request({"input": [1.5]}, InputType.INTEGERS)
    with pytest.raises(InvalidInput, match="not of type int"):
        parse_request({"input": [2**31]}, InputType.INTEGERS)


def test_strings_and_bytes():
    assert parse_request({"input": "héllo"}, InputType.STRINGS)[0] == ["héllo".encode()]
    raw = bytes(range(5))
    assert parse_request({"input": base64.b64encode(raw).decode()}, InputType.BYTES)[0] == [raw]
    with pytest.raises(InvalidInput, match="base64"):
        parse_request({"input": "@@@"}, InputType.BYTES)


def test_batch_and_version():
    inputs, batch, version = parse_request({"input_batch": ["a", "b"], "version": "2"}, InputType.STRINGS)
    assert inputs == [b"a", b"b"] and batch and version == "2"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "does not have required keys input or input_batch"),
        ([1], "must be a JSON object"),
        ({"input": "x"}, "expected type Array but found type String"),
        ({"input": [1.0, "x"]}, "Array input of type String"),
        ({"input": [True]}, "Boolean"),
        ({"input_batch": 3}, "input_batch expected type Array"),
        ({"input": [1.0], "version": 2}, "version expected type String"),
    ],
)
def test_errors_name_the_field_and_the_problem(body, message):
    with pytest.raises(InvalidInput, match=message):
        parse_request(body, InputType.DOUBLES)


def test_the_boolean_check_can_be_skipped_when_the_body_has_no_booleans():
    assert parse_request({"input": [1.0, 2.0]}, InputType.DOUBLES, may_hold_bools=False)[0] == [
        struct.pack("<2d", 1.0, 2.0)
    ]


def test_a_batch_over_max_inputs_is_refused_before_its_inputs_are_checked():
    """TooManyInputs (an InvalidInput) names count and limit; entries are not looked at, even bad ones."""
    with pytest.raises(TooManyInputs, match=r"input_batch has 3 inputs; a request may carry at most 2"):
        parse_request({"input_batch": [[1], "bad", None]}, InputType.DOUBLES, max_inputs=2)
    inputs, batch, _ = parse_request({"input_batch": [[1.0], [2.0]]}, InputType.DOUBLES, max_inputs=2)
    assert (len(inputs), batch) == (2, True)
    assert parse_request({"input": [1.0, 2.0, 3.0]}, InputType.DOUBLES, max_inputs=1)[1] is False


def test_bytes_input_with_characters_outside_ascii_is_invalid_base64():
    """Found by the fuzz tests: base64 raised a bare ValueError here, which became a 500."""
    with pytest.raises(InvalidInput, match="input is not valid base64"):
        parse_request({"input": "\u00e9AAA"}, InputType.BYTES)
