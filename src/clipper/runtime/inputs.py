"""Raw RPC inputs -> the numpy values a predict function receives, exactly as Clipper 0.4 hands them over.

Numeric inputs of equal length become one writable 2-D array (rows = inputs); unequal lengths become a 1-D
object array of 1-D arrays. Bytes are signed int8 (as in Clipper). Strings are an object array of `bytes`.
Ours: with a declared shape, numeric inputs become one (batch, *shape) array over one buffer; `json`
inputs become a list of the decoded values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from clipper.types import InputType

DTYPES: dict[InputType, np.dtype[np.generic]] = {
    InputType.BYTES: np.dtype("i1"),
    InputType.INTEGERS: np.dtype("<i4"),
    InputType.FLOATS: np.dtype("<f4"),
    InputType.DOUBLES: np.dtype("<f8"),
}


class MalformedInput(ValueError):
    """An input whose bytes do not fit its type: not a whole number of items, not the declared shape, or
    not JSON."""


def decode_inputs(
    input_type: InputType, inputs: Sequence[bytes], shape: tuple[int, ...] | None = None
) -> npt.NDArray[np.generic] | list[Any]:
    """Convert one batch; raise MalformedInput if an input does not fit its type (or `shape`)."""
    if input_type is InputType.JSON:
        return _decode_json(inputs)
    if shape is not None and input_type is not InputType.STRINGS:
        return _decode_shaped(DTYPES[input_type], inputs, shape)
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


def _decode_json(inputs: Sequence[bytes]) -> list[Any]:
    values = []
    for i, raw in enumerate(inputs):
        try:
            values.append(orjson.loads(raw))
        except orjson.JSONDecodeError as e:
            raise MalformedInput(f"input {i} is not JSON: {e}") from e
    return values


def _decode_shaped(
    dtype: np.dtype[np.generic], inputs: Sequence[bytes], shape: tuple[int, ...]
) -> npt.NDArray[np.generic]:
    """One writable (batch, *shape) array over a single buffer (one copy, as for unshaped inputs)."""
    size = math.prod(shape) * dtype.itemsize
    for i, raw in enumerate(inputs):
        if len(raw) != size:
            raise MalformedInput(
                f"input {i} has {len(raw)} bytes; shape {list(shape)} of {dtype.name} needs {size}"
            )
    return np.frombuffer(bytearray().join(inputs), dtype=dtype).reshape(len(inputs), *shape)
