"""Turn a predict request's JSON into raw input bytes per Clipper input type (reference §2.3).

Improvements over Clipper: any JSON number is accepted for `floats`/`doubles` (§9 #14), booleans are not
numbers, and bad base64 is an error instead of garbage.
"""

from __future__ import annotations

import base64
from array import array
from typing import Any

import orjson

from clipper.errors import InvalidInput
from clipper.types import INT32_MAX, INT32_MIN, InputType


class TooManyInputs(InvalidInput):
    """A batch holds more inputs than one request may carry; retrying cannot help, so it is no 503."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"input_batch has {count} inputs; a request may carry at most {limit} (max_inputs_per_request)"
        )


_ARRAY_CODES = {InputType.DOUBLES: "d", InputType.FLOATS: "f", InputType.INTEGERS: "i"}
_FLOAT_MAX = 3.4028234663852886e38


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


def encode_input(value: Any, input_type: InputType, field: str, may_hold_bools: bool = True) -> bytes:
    """One input as the bytes a container receives; InvalidInput names the field and the problem."""
    code = _ARRAY_CODES.get(input_type)
    if code is not None:
        if not isinstance(value, list):
            raise InvalidInput(
                f"Type mismatch! JSON key {field} expected type Array but found type {_json_type(value)}"
            )
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
        if code == "f" and any(abs(v) > _FLOAT_MAX for v in value if isinstance(v, float) and v == v):
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
        return base64.b64decode(value, validate=True)
    except ValueError as e:  # binascii.Error, or a character outside ASCII
        raise InvalidInput(f"{field} is not valid base64: {e}") from e


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


def parse_request(
    body: Any, input_type: InputType, may_hold_bools: bool = True, max_inputs: int | None = None
) -> tuple[list[bytes], bool, str | None]:
    """(inputs, is_batch, requested version) from a decoded predict body.

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
        return [encode_input(body["input"], input_type, "input", may_hold_bools)], False, version
    if "input_batch" in body:
        batch = body["input_batch"]
        if not isinstance(batch, list):
            raise InvalidInput(
                f"Type mismatch! JSON key input_batch expected type Array but found type {_json_type(batch)}"
            )
        if max_inputs is not None and len(batch) > max_inputs:
            raise TooManyInputs(len(batch), max_inputs)
        inputs = [
            encode_input(v, input_type, f"input_batch[{i}]", may_hold_bools) for i, v in enumerate(batch)
        ]
        return inputs, True, version
    raise InvalidInput("JSON object does not have required keys input or input_batch")
