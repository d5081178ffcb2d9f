"""Raw RPC inputs -> the numpy values a predict function receives, exactly as Clipper 0.4 hands them over.

Numeric inputs of equal length become one writable 2-D array (rows = inputs); unequal lengths become a 1-D
object array of 1-D arrays. Bytes are signed int8 (as in Clipper). Strings are an object array of `bytes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from clipper.types import InputType

DTYPES: dict[InputType, np.dtype[np.generic]] = {
    InputType.BYTES: np.dtype("i1"),
    InputType.INTEGERS: np.dtype("<i4"),
    InputType.FLOATS: np.dtype("<f4"),
    InputType.DOUBLES: np.dtype("<f8"),
}


class MalformedInput(ValueError):
    """An input whose byte length is not a whole number of items of its type."""


def decode_inputs(input_type: InputType, inputs: Sequence[bytes]) -> npt.NDArray[np.generic]:
    """Convert one batch; raise MalformedInput if an input's size does not fit its dtype."""
    if input_type is InputType.STRINGS:
        strings = np.empty(len(inputs), dtype=object)
        strings[:] = inputs
        return strings
    dtype = DTYPES[input_type]
    size = dtype.itemsize
    for i, raw in enumerate(inputs):
        if len(raw) % size:
            raise MalformedInput(
                f"input {i} has {len(raw)} bytes, not a multiple of {size} ({input_type.wire_name})"
            )
    first = len(inputs[0]) if inputs else 0
    if all(len(raw) == first for raw in inputs):
        # bytearray.join copies once and yields a writable buffer, as Clipper's np.array(...) copy was.
        flat = np.frombuffer(bytearray().join(inputs), dtype=dtype)
        return flat.reshape(len(inputs), first // size)
    ragged = np.empty(len(inputs), dtype=object)
    for i, raw in enumerate(inputs):
        ragged[i] = np.frombuffer(bytearray(raw), dtype=dtype)
    return ragged
