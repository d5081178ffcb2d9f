"""Turn a predict request's JSON into raw input bytes per Clipper input type (reference §2.3).

Improvements over Clipper: any JSON number is accepted for `floats`/`doubles` (§9 #14), booleans are not
numbers, and bad base64 is an error instead of garbage. Ours: `json` inputs (any JSON value, re-serialised)
and declared shapes: a shaped app takes nested lists of that shape or a flat list of prod(shape) numbers.
"""

from __future__ import annotations

import base64
import math
from array import array
from typing import Any

import orjson

from clipper.errors import InvalidInput
from clipper.types import FLOAT32_MAX, INT32_MAX, INT32_MIN, InputType


class TooManyInputs(InvalidInput):
    """A batch holds more inputs than one request may carry; retrying cannot help, so it is no 503."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"input_batch has {count} inputs; a request may carry at most {limit} (max_inputs_per_request)"
        )


_ARRAY_CODES = {InputType.DOUBLES: "d", InputType.FLOATS: "f", InputType.INTEGERS: "i"}


def _json_type(value: object) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def shape_text(shape: tuple[int, ...]) -> str:
    """A shape as the API spells it, `[2, 3]`."""
    return f"[{', '.join(map(str, shape))}]"


def _found_shape(value: Any) -> str:
    """The shape of nested lists as the API spells it, or `ragged` where sibling lists differ."""
    if not isinstance(value, list):
        return "[]"
    inner = {_found_shape(v) for v in value}
    if len(inner) > 1:
        return "ragged"
    below = inner.pop() if inner else "[]"
    return below if below == "ragged" else f"[{len(value)}{', ' + below[1:] if below != '[]' else ']'}"


def _collect(value: Any, shape: tuple[int, ...], out: list[Any]) -> bool:
    """Append the numbers of `value`, nested as `shape`, to `out`; False if the nesting differs."""
    if not isinstance(value, list) or len(value) != shape[0]:
        return False
    if len(shape) == 1:
        out.extend(value)
        return not any(isinstance(v, list) for v in value)
    return all(_collect(v, shape[1:], out) for v in value)


def _flatten(value: list[Any], shape: tuple[int, ...], field: str) -> list[Any]:
    """A flat list of the numbers in `value`, which is flat (prod(shape) numbers) or nested as `shape`."""
    size = math.prod(shape)
    flat: list[Any] = []
    if not any(isinstance(v, list) for v in value):
        if len(value) == size:
            return value
    elif _collect(value, shape, flat):
        return flat
    found = _found_shape(value)
    found = "ragged nested lists" if found == "ragged" else f"shape {found}"
    raise InvalidInput(
        f"{field} has {found} but the app's input_shape is {shape_text(shape)}"
        f" (send nested lists of that shape or a flat list of {size} numbers)"
    )


def encode_input(
    value: Any,
    input_type: InputType,
    field: str,
    may_hold_bools: bool = True,
    shape: tuple[int, ...] | None = None,
) -> bytes:
    """One input as the bytes a container receives; InvalidInput names the field and the problem.

    With `shape` (numeric types only), the input must hold exactly prod(shape) numbers, nested or flat.
    """
    if input_type is InputType.JSON:
        return orjson.dumps(value)
    code = _ARRAY_CODES.get(input_type)
    if code is not None:
        if not isinstance(value, list):
            raise InvalidInput(
                f"Type mismatch! JSON key {field} expected type Array but found type {_json_type(value)}"
            )
        if shape is not None:
            value = _flatten(value, shape, field)
        if may_hold_bools and any(type(v) is bool for v in value):
            raise InvalidInput(
                f"Array input of type Boolean is not of type {input_type.wire_name} in {field}"
            )
        try:
            arr = array(code, value)
        except (TypeError, OverflowError) as e:
            bad = next((v for v in value if not isinstance(v, int | float)), None)
            if bad is not None:
                raise InvalidInput(
                    f"Array input of type {_json_type(bad)} is not of type Number in {field}"
                ) from e
            if input_type is InputType.INTEGERS:
                wrong = next(v for v in value if not isinstance(v, int) or not INT32_MIN <= v <= INT32_MAX)
                problem = (  # JSON integers past int64 arrive as floats: 1e+20 is integral, and too large
                    "not an integer"
                    if isinstance(wrong, float) and not wrong.is_integer()
                    else f"outside the int32 range [{INT32_MIN}, {INT32_MAX}]"
                )
                raise InvalidInput(
                    f"Array input of type Number is not of type int in {field}: {wrong!r} is {problem}"
                ) from e
            kind = input_type.wire_name[:-1]
            raise InvalidInput(f"Array input of type Number is not of type {kind} in {field}: {e}") from e
        if code == "f" and any(abs(v) > FLOAT32_MAX for v in value if isinstance(v, float) and v == v):
            raise InvalidInput(f"Array input of type Number is not of type float in {field}: out of range")
        return arr.tobytes()
    if not isinstance(value, str):
        if input_type is InputType.BYTES:
            raise InvalidInput(
                f"PredictionData of type {_json_type(value)} is not of type base64-encoded string"
            )
        raise InvalidInput(f"Array input of type {_json_type(value)} is not of type string in {field}")
    if input_type is InputType.STRINGS:
        return value.encode()
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError as e:  # binascii.Error, or a character outside ASCII
        raise InvalidInput(f"{field} is not valid base64: {e}") from e
    if shape is not None and len(raw) != math.prod(shape):
        raise InvalidInput(
            f"{field} has {len(raw)} bytes but the app's input_shape {shape_text(shape)}"
            f" needs {math.prod(shape)}"
        )
    return raw


def load_json(raw: bytes) -> Any:
    """A request body's JSON, or InvalidInput saying why not (bytes that are not UTF-8 named as such, not
    as orjson's 'surrogates not allowed')."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        try:
            raw.decode()
        except UnicodeDecodeError as bad:
            cause = f"the body is not valid UTF-8 (byte 0x{raw[bad.start]:02x} at offset {bad.start})"
        else:
            cause = str(e)
        raise InvalidInput(f"Error parsing JSON: {cause}") from e


def parse_uid(value: object) -> str | None:
    """A body's optional `uid` (an integer, as Clipper's, or a string) as text."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput("Type mismatch! JSON key uid expected type Integer (or String)")
    return str(value)


def check_lengths(inputs: list[bytes], is_batch: bool, input_type: InputType, shape: tuple[int, ...]) -> None:
    """InvalidInput naming the first flat numeric input whose length does not fill `shape`.

    For inputs already encoded elsewhere (the `doubles` fast path), which cannot carry nesting.
    """
    size = math.prod(shape)
    itemsize = 1 if input_type is InputType.BYTES else 4 if input_type is not InputType.DOUBLES else 8
    for i, raw in enumerate(inputs):
        if len(raw) != size * itemsize:
            field = f"input_batch[{i}]" if is_batch else "input"
            raise InvalidInput(
                f"{field} has shape [{len(raw) // itemsize}] but the app's input_shape is {shape_text(shape)}"
                f" (send nested lists of that shape or a flat list of {size} numbers)"
            )


def parse_request(
    body: Any,
    input_type: InputType,
    may_hold_bools: bool = True,
    max_inputs: int | None = None,
    shape: tuple[int, ...] | None = None,
) -> tuple[list[bytes], bool, str | None]:
    """(inputs, is_batch, requested version) from a decoded predict body; `shape` is the app's input_shape.

    A batch longer than `max_inputs` raises TooManyInputs before any input is converted.
    `may_hold_bools=False` (the raw body has no `true`/`false`) skips the per-element boolean check,
    which costs more than the rest of the parsing on large numeric inputs.
    """
    if not isinstance(body, dict):
        raise InvalidInput(f"Request body must be a JSON object, found type {_json_type(body)}")
    version = body.get("version")
    if version is not None and not isinstance(version, str):
        raise InvalidInput(
            f"Type mismatch! JSON key version expected type String but found type {_json_type(version)}"
        )
    if "input" in body:
        return [encode_input(body["input"], input_type, "input", may_hold_bools, shape)], False, version
    if "input_batch" in body:
        batch = body["input_batch"]
        if not isinstance(batch, list):
            raise InvalidInput(
                f"Type mismatch! JSON key input_batch expected type Array but found type {_json_type(batch)}"
            )
        if max_inputs is not None and len(batch) > max_inputs:
            raise TooManyInputs(len(batch), max_inputs)
        inputs = [
            encode_input(v, input_type, f"input_batch[{i}]", may_hold_bools, shape)
            for i, v in enumerate(batch)
        ]
        return inputs, True, version
    raise InvalidInput("JSON object does not have required keys input or input_batch")
