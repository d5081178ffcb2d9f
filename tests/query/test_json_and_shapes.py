"""`json` inputs and declared input shapes at the query edge: what a container gets, and what is refused."""

import base64
import struct

import orjson
import pytest

from clipper.errors import InvalidInput
from clipper.query.inputs import check_lengths, parse_request
from clipper.types import InputType

SHAPE = (2, 3)


def test_json_type_parses_and_keeps_clippers_codes():
    assert InputType.parse("json") is InputType.parse("j") is InputType.JSON
    assert InputType.parse_env(" JSON ") is InputType.JSON
    assert int(InputType.JSON) == 5
    assert [int(t) for t in InputType][:5] == [0, 1, 2, 3, 4]
    assert "json" in InputType.spellings()
    assert [t.is_numeric for t in InputType] == [True, True, True, True, False, False]


@pytest.mark.parametrize(
    "value", [{"a": [1, 2.5], "b": None}, [1, "x", {"y": True}], "text", 42, 1.5, None, False, []]
)
def test_json_inputs_are_any_json_value_reserialised(value):
    inputs, batch, _ = parse_request({"input": value}, InputType.JSON)
    assert inputs == [orjson.dumps(value)] and not batch
    assert orjson.loads(inputs[0]) == value


def test_json_batch_keeps_each_value():
    values = [{"k": 1}, [1, 2], "s", None]
    inputs, batch, _ = parse_request({"input_batch": values}, InputType.JSON)
    assert batch and [orjson.loads(i) for i in inputs] == values


def test_same_json_value_gives_same_bytes_for_the_cache():
    one = parse_request({"input": {"b": 1, "a": [1.0]}}, InputType.JSON)[0]
    two = parse_request(orjson.loads(b'{"input": {"b": 1, "a": [1.0]}}'), InputType.JSON)[0]
    assert one == two


@pytest.mark.parametrize("value", [[[1, 2, 3], [4, 5, 6]], [1, 2, 3, 4, 5, 6]])
def test_shaped_doubles_take_nested_or_flat_lists(value):
    inputs, _, _ = parse_request({"input": value}, InputType.DOUBLES, shape=SHAPE)
    assert inputs == [struct.pack("<6d", 1, 2, 3, 4, 5, 6)]


def test_shaped_integers_and_floats_flatten_in_row_major_order():
    nested = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    assert parse_request({"input": nested}, InputType.INTEGERS, shape=(2, 2, 2))[0] == [
        struct.pack("<8i", *range(1, 9))
    ]
    assert parse_request({"input_batch": [[[1.5], [2.5]]]}, InputType.FLOATS, shape=(2, 1))[0] == [
        struct.pack("<2f", 1.5, 2.5)
    ]


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ([[1, 2], [3, 4]], "shape [2, 2]"),
        ([[1, 2, 3]], "shape [1, 3]"),
        ([1, 2, 3, 4, 5], "shape [5]"),
        ([[[1, 2, 3]], [[4, 5, 6]]], "shape [2, 1, 3]"),
        ([[1, 2, 3], [4, 5]], "ragged nested lists"),
        ([[1, 2, 3], 4, [5, 6]], "ragged nested lists"),
        ([[1, 2, 3], [4, 5, [6]]], "ragged nested lists"),
    ],
)
def test_shaped_apps_refuse_other_shapes_naming_field_and_both_shapes(value, found):
    with pytest.raises(InvalidInput) as e:
        parse_request({"input_batch": [[[0] * 3] * 2, value]}, InputType.DOUBLES, shape=SHAPE)
    assert str(e.value).startswith(f"input_batch[1] has {found} but the app's input_shape is [2, 3]")


def test_shaped_inputs_still_check_their_numbers():
    with pytest.raises(InvalidInput, match="Boolean"):
        parse_request({"input": [[1, 2, 3], [4, 5, True]]}, InputType.DOUBLES, shape=SHAPE)
    with pytest.raises(InvalidInput, match="String is not of type Number in input"):
        parse_request({"input": [[1, 2, 3], [4, 5, "6"]]}, InputType.DOUBLES, shape=SHAPE)
    with pytest.raises(InvalidInput, match="expected type Array but found type Object"):
        parse_request({"input": {"a": 1}}, InputType.DOUBLES, shape=SHAPE)


def test_shaped_bytes_need_prod_shape_bytes():
    raw = bytes(range(6))
    assert parse_request({"input": base64.b64encode(raw).decode()}, InputType.BYTES, shape=SHAPE)[0] == [raw]
    with pytest.raises(InvalidInput, match=r"input has 5 bytes but the app's input_shape \[2, 3\] needs 6"):
        parse_request({"input": base64.b64encode(raw[:5]).decode()}, InputType.BYTES, shape=SHAPE)


def test_unshaped_apps_keep_clippers_any_length():
    inputs, _, _ = parse_request({"input_batch": [[1.0], [1.0, 2.0]]}, InputType.DOUBLES)
    assert [len(i) for i in inputs] == [8, 16]


def test_check_lengths_names_the_first_flat_input_of_the_wrong_size():
    good = struct.pack("<6d", *range(6))
    check_lengths([good, good], True, InputType.DOUBLES, SHAPE)
    with pytest.raises(InvalidInput, match=r"input_batch\[1\] has shape \[4\] but .* is \[2, 3\]"):
        check_lengths([good, good[:32]], True, InputType.DOUBLES, SHAPE)
    with pytest.raises(InvalidInput, match=r"^input has shape \[7\]"):
        check_lengths([struct.pack("<7f", *range(7))], False, InputType.FLOATS, SHAPE)
