"""decode_inputs gives user code what Clipper 0.4's Python runtime gave it (reference §4.8)."""

from __future__ import annotations

import numpy as np
import pytest

from clipper.runtime.inputs import MalformedInput, decode_inputs
from clipper.types import InputType


def test_bytes_are_signed_int8():
    arr = decode_inputs(InputType.BYTES, [b"\x00\xff", b"\x80\x7f"])
    assert arr.dtype == np.int8 and arr.tolist() == [[0, -1], [-128, 127]]


def test_equal_lengths_give_a_writable_2d_copy():
    raw = [np.arange(3, dtype="<f8").tobytes(), np.arange(3, 6, dtype="<f8").tobytes()]
    arr = decode_inputs(InputType.DOUBLES, raw)
    arr[0, 0] = 99.0
    assert arr.shape == (2, 3) and arr.tolist() == [[99.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_unequal_lengths_give_writable_rows():
    arr = decode_inputs(InputType.INTEGERS, [np.int32(5).tobytes(), np.arange(2, dtype="<i4").tobytes()])
    arr[0][0] = 6
    assert arr.dtype == object and [r.tolist() for r in arr] == [[6], [0, 1]]


def test_empty_inputs_and_empty_batch():
    assert decode_inputs(InputType.FLOATS, [b"", b""]).shape == (2, 0)
    assert decode_inputs(InputType.FLOATS, []).shape == (0, 0)
    assert decode_inputs(InputType.STRINGS, []).shape == (0,)


def test_strings_stay_bytes_even_when_equal_length():
    arr = decode_inputs(InputType.STRINGS, [b"ab", b"cd"])
    assert arr.dtype == object and list(arr) == [b"ab", b"cd"]


def test_size_not_a_multiple_of_the_item_size_is_rejected():
    with pytest.raises(MalformedInput, match="input 1 has 5 bytes, not a multiple of 4"):
        decode_inputs(InputType.INTEGERS, [b"\x00" * 4, b"\x00" * 5])
