"""The runtime's decoding of `json` inputs and of numeric inputs with a declared shape."""

import struct

import numpy as np
import orjson
import pytest

from clipper.errors import InvalidInput
from clipper.rpc import codec
from clipper.runtime.inputs import MalformedInput, decode_inputs
from clipper.types import InputType, parse_input_shape


@pytest.mark.parametrize(
    ("input_type", "fmt", "dtype"),
    [
        (InputType.DOUBLES, "<6d", np.float64),
        (InputType.FLOATS, "<6f", np.float32),
        (InputType.INTEGERS, "<6i", np.int32),
        (InputType.BYTES, "<6b", np.int8),
    ],
)
def test_shaped_batch_is_one_array_over_one_buffer(input_type, fmt, dtype):
    inputs = [struct.pack(fmt, *range(i, i + 6)) for i in range(3)]
    batch = decode_inputs(input_type, inputs, (2, 3))
    assert isinstance(batch, np.ndarray)
    assert batch.shape == (3, 2, 3) and batch.dtype == dtype
    assert batch[2].tolist() == [[2, 3, 4], [5, 6, 7]]
    base = batch.base
    assert isinstance(base, np.ndarray) and base.ndim == 1 and base.size == 18  # one flat buffer
    assert isinstance(base.base.obj, bytearray)  # ...over one bytearray (via a memoryview), not one per input
    assert batch.flags.writeable and batch[0].base is batch[2].base is base  # rows are views of it


def test_shaped_batch_refuses_an_input_of_another_size():
    inputs = [struct.pack("<6d", *range(6)), struct.pack("<4d", *range(4))]
    with pytest.raises(MalformedInput, match=r"input 1 has 32 bytes; shape \[2, 3\] of float64 needs 48"):
        decode_inputs(InputType.DOUBLES, inputs, (2, 3))


def test_unshaped_batches_stay_as_clipper_gives_them():
    batch = decode_inputs(InputType.DOUBLES, [struct.pack("<6d", *range(6))])
    assert isinstance(batch, np.ndarray) and batch.shape == (1, 6)


def test_json_batch_is_a_list_of_decoded_values():
    values = [{"a": [1, 2]}, "s", 3.5, None]
    assert decode_inputs(InputType.JSON, [orjson.dumps(v) for v in values]) == values
    with pytest.raises(MalformedInput, match="input 1 is not JSON"):
        decode_inputs(InputType.JSON, [b"1", b"{"])


def test_json_travels_on_the_rpc_wire_as_code_5():
    frames = codec.encode_predict_request(7, InputType.JSON, [b'{"a":1}', b"[1,2]"])
    message = codec.decode_frontend_message(frames)
    assert isinstance(message, codec.PredictRequest)
    assert message.input_type is InputType.JSON and message.inputs == [b'{"a":1}', b"[1,2]"]


def test_input_shape_setting_parses_and_names_bad_values():
    assert parse_input_shape("28,28") == (28, 28)
    assert parse_input_shape(None) is None and parse_input_shape("") is None
    for bad in ("28,x", "0,3", "-1", ",", "2,,3"):
        with pytest.raises(InvalidInput, match="positive integers separated by commas"):
            parse_input_shape(bad)
