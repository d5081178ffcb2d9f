"""Open Inference Protocol tensors <-> Clipper inputs and outputs; pure, no HTTP and no I/O.

An infer request's one input tensor becomes one Clipper input per row (its first dimension is the batch),
as the bytes a container receives for the app's input type, from JSON `data` (flat or nested, row-major)
or from the binary tensor extension. Answers become two outputs: `output` (BYTES, the model's output text
per row) and `default` (BOOL, whether the row got the app's default output).
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import simdjson

from clipper.errors import InvalidInput
from clipper.query.answers import Answer, DefaultAnswer, Explained
from clipper.query.inputs import TooManyInputs, load_json
from clipper.types import FLOAT32_MAX, InputType

# The OIP datatype of each input type. Clipper's bytes reach a model as signed int8, so they are INT8.
DATATYPES: dict[InputType, str] = {
    InputType.DOUBLES: "FP64",
    InputType.FLOATS: "FP32",
    InputType.INTEGERS: "INT32",
    InputType.BYTES: "INT8",
    InputType.STRINGS: "BYTES",
    InputType.JSON: "BYTES",
}
_ARRAY_CODES = {"FP64": "d", "FP32": "f", "INT32": "i", "INT8": "b"}
OUTPUT_NAMES = ("output", "default")
_LENGTH = struct.Struct("<I")


class BatchTooLarge(TooManyInputs):
    """A tensor with more rows than one request may carry (413, as for Clipper's `input_batch`)."""

    def __init__(self, count: int, limit: int) -> None:
        InvalidInput.__init__(
            self,
            f"inputs[0] has {count} rows (shape[0]); a request may carry at most {limit} "
            "(max_inputs_per_request)",
        )


def input_shape(input_type: InputType, shape: tuple[int, ...] | None) -> list[int]:
    """The input's shape in model metadata: -1 (any batch) then the app's shape; one element for text."""
    if not input_type.is_numeric:
        return [-1]
    return [-1, *shape] if shape is not None else [-1, -1]


@dataclass(slots=True)
class InferRequest:
    """What an infer body asks for: Clipper inputs, and how the answer should look."""

    inputs: list[bytes]
    id: str | None
    outputs: dict[str, bool]  # output name -> sent as binary data


def split_body(raw: bytes, header_length: bytes | None) -> tuple[bytes, memoryview]:
    """The JSON head and the binary data after it (binary tensor extension), from the header's value."""
    if header_length is None:
        return raw, memoryview(b"")
    if not header_length.strip().isdigit() or int(header_length) > len(raw):
        raise InvalidInput(
            f"Inference-Header-Content-Length is {header_length.decode('latin-1')!r}, "
            f"not a length within the {len(raw)}-byte body"
        )
    n = int(header_length)
    return raw[:n], memoryview(raw)[n:]


def parse_infer(
    raw: bytes,
    header_length: bytes | None,
    input_type: InputType,
    shape: tuple[int, ...] | None,
    max_inputs: int,
) -> InferRequest:
    """Validate an infer body against the app and turn its tensor's rows into Clipper inputs.

    InvalidInput names the field and the problem; TooManyInputs if the batch is over `max_inputs`.
    """
    head, binary = split_body(raw, header_length)
    fast = _fp64_fast(head) if header_length is None and input_type is InputType.DOUBLES else None
    body, fp64 = fast if fast is not None else (load_json(head), None)
    if not isinstance(body, dict):
        raise InvalidInput("the infer request must be a JSON object")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("id must be a string")
    params = _object(body.get("parameters"), "parameters")
    binary_all = params.get("binary_data_output") is True
    tensors = body.get("inputs")
    if not isinstance(tensors, list) or len(tensors) != 1:
        count = len(tensors) if isinstance(tensors, list) else "no list of"
        raise InvalidInput(f"inputs must hold exactly one tensor (the app's one input); found {count}")
    may_hold_bools = fp64 is None and (b"true" in head or b"false" in head)
    inputs, used = _rows(tensors[0], binary, fp64, input_type, shape, max_inputs, may_hold_bools)
    if used != len(binary):
        raise InvalidInput(f"the body has {len(binary)} bytes of binary data but the inputs use {used}")
    return InferRequest(inputs, request_id, _outputs(body.get("outputs"), binary_all))


def _fp64_fast(head: bytes) -> tuple[dict[str, Any], bytes] | None:
    """(the body without its tensor's `data`, that data as float64 bytes) when `data` is all numbers, or
    None for the general path. simdjson reads the numbers straight into a buffer: a 784-number body costs
    ~25 us less than orjson's Python floats plus array('d'), and no scan for booleans is needed."""
    try:
        doc: Any = simdjson.Parser().parse(head)
        inputs: Any = doc["inputs"] if isinstance(doc, simdjson.Object) and "inputs" in doc else None
        tensor: Any = inputs[0] if isinstance(inputs, simdjson.Array) and len(inputs) == 1 else None
        if not isinstance(tensor, simdjson.Object) or "data" not in tensor:
            return None
        values: Any = tensor["data"]
        data = bytes(values.as_buffer(of_type="d"))
        body = {k: _plain(doc[k]) for k in doc.keys() if k != "inputs"}
        body["inputs"] = [{k: _plain(tensor[k]) for k in tensor.keys() if k != "data"}]
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RuntimeError):
        return None
    return body, data


def _plain(value: Any) -> Any:
    """A simdjson value as Python objects."""
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    return value.as_list() if isinstance(value, simdjson.Array) else value


def _object(value: object, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object")
    return value


def _outputs(value: object, binary_all: bool) -> dict[str, bool]:
    """The requested outputs (all when none are named) and whether each goes as binary data."""
    if value is None:
        return dict.fromkeys(OUTPUT_NAMES, binary_all)
    if not isinstance(value, list):
        raise InvalidInput("outputs must be a list of {name, parameters} objects")
    wanted = {}
    for i, out in enumerate(value):
        name = out.get("name") if isinstance(out, dict) else None
        if name not in OUTPUT_NAMES:
            raise InvalidInput(f"outputs[{i}].name must be one of {', '.join(OUTPUT_NAMES)}; found {name!r}")
        binary = _object(out.get("parameters"), f"outputs[{i}].parameters").get("binary_data", binary_all)
        wanted[name] = binary is True
    return wanted


def _shape(tensor: dict[str, Any], input_type: InputType, app_shape: tuple[int, ...] | None) -> list[int]:
    """The tensor's shape, checked against the app's: [batch, *input_shape], [batch, n], or [batch(, 1)]."""
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput("inputs[0].shape must be a non-empty list of non-negative integers")
    if input_type.is_numeric:
        expected = [shape[0], *app_shape] if app_shape is not None else None
        if expected is not None and shape != expected:
            raise InvalidInput(
                f"inputs[0].shape is {shape} but the model takes {expected} ([batch, *input_shape])"
            )
        if expected is None and len(shape) != 2:
            raise InvalidInput(f"inputs[0].shape is {shape} but the model takes [batch, length]")
    elif shape[1:] not in ([], [1]):
        raise InvalidInput(f"inputs[0].shape is {shape} but the model takes [batch] (one element per row)")
    return shape


def _rows(
    tensor: object,
    binary: memoryview,
    fp64: bytes | None,
    input_type: InputType,
    app_shape: tuple[int, ...] | None,
    max_inputs: int,
    may_hold_bools: bool,
) -> tuple[list[bytes], int]:
    """The tensor's rows as Clipper inputs, and how many bytes of binary data they took; `fp64` holds the
    tensor's `data` if the fast path read it."""
    if not isinstance(tensor, dict):
        raise InvalidInput("inputs[0] must be a tensor object {name, shape, datatype, data}")
    if not isinstance(tensor.get("name"), str):
        raise InvalidInput("inputs[0].name must be a string")
    expected = DATATYPES[input_type]
    if tensor.get("datatype") != expected:
        raise InvalidInput(
            f"inputs[0].datatype is {tensor.get('datatype')!r} but the model takes {expected} "
            f"(app input type {input_type.wire_name})"
        )
    shape = _shape(tensor, input_type, app_shape)
    batch = shape[0]
    if batch > max_inputs:
        raise BatchTooLarge(batch, max_inputs)
    size = _object(tensor.get("parameters"), "inputs[0].parameters").get("binary_data_size")
    if size is not None:
        if type(size) is not int or not 0 <= size <= len(binary):
            raise InvalidInput(f"inputs[0].parameters.binary_data_size {size!r} exceeds the binary data")
        data = binary[:size]
        if expected == "BYTES":
            return _text_rows(_split_lengths(data, batch), input_type), size
        return _binary_rows(data, batch, math.prod(shape), expected), size
    if fp64 is not None:
        if len(fp64) != 8 * math.prod(shape):
            raise _count_mismatch(len(fp64) // 8, shape)
        return _split_rows(fp64, batch), 0
    values = tensor.get("data")
    if not isinstance(values, list):
        raise InvalidInput("inputs[0].data must be a list (or the tensor sent as binary data)")
    flat = _flatten(values)
    if len(flat) != math.prod(shape):
        raise _count_mismatch(len(flat), shape)
    if expected == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise InvalidInput("inputs[0].data of a BYTES tensor must hold strings")
        return _text_rows([v.encode() for v in flat], input_type), 0
    return _number_rows(flat, batch, expected, may_hold_bools), 0


def _count_mismatch(found: int, shape: list[int]) -> InvalidInput:
    return InvalidInput(f"inputs[0].data holds {found} elements but shape {shape} needs {math.prod(shape)}")


def _flatten(values: list[Any]) -> list[Any]:
    """Nested lists in row-major order; a flat list as it is (judged by its first element: a list mixing
    numbers and lists is refused later, as numbers of the wrong type)."""
    if not values or not isinstance(values[0], list):
        return values
    out: list[Any] = []
    for v in values:
        out.extend(_flatten(v) if isinstance(v, list) else (v,))
    return out


def _split_rows(buf: bytes, batch: int) -> list[bytes]:
    if batch == 0:
        return []
    step = len(buf) // batch
    return [buf[i : i + step] for i in range(0, len(buf), step)] if step else [b""] * batch


def _binary_rows(data: memoryview, batch: int, count: int, datatype: str) -> list[bytes]:
    itemsize = array(_ARRAY_CODES[datatype]).itemsize
    if len(data) != count * itemsize:
        raise InvalidInput(
            f"inputs[0] has {len(data)} bytes of binary data but its shape needs {count} x {itemsize}"
        )
    return _split_rows(bytes(data), batch)


def _number_rows(flat: list[Any], batch: int, datatype: str, may_hold_bools: bool) -> list[bytes]:
    if may_hold_bools and any(type(v) is bool for v in flat):
        raise InvalidInput(f"inputs[0].data holds a boolean; a {datatype} tensor holds numbers")
    try:
        numbers = array(_ARRAY_CODES[datatype], flat)
    except (TypeError, OverflowError) as e:
        raise InvalidInput(f"inputs[0].data does not fit datatype {datatype}: {e}") from e
    if datatype == "FP32" and any(abs(v) > FLOAT32_MAX for v in flat if isinstance(v, float) and v == v):
        raise InvalidInput("inputs[0].data does not fit datatype FP32: a number is out of its range")
    return _split_rows(numbers.tobytes(), batch)


def _split_lengths(data: memoryview, batch: int) -> list[bytes]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then that many bytes."""
    out, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidInput("inputs[0] binary data ends inside an element's 4-byte length")
        (n,) = _LENGTH.unpack_from(data, offset)
        if offset + 4 + n > len(data):
            raise InvalidInput("inputs[0] binary data ends inside an element")
        out.append(bytes(data[offset + 4 : offset + 4 + n]))
        offset += 4 + n
    if len(out) != batch:
        raise InvalidInput(f"inputs[0] binary data holds {len(out)} elements but its shape needs {batch}")
    return out


def _text_rows(elements: list[bytes], input_type: InputType) -> list[bytes]:
    """UTF-8 strings as they are; `json` inputs parsed and re-serialised, as Clipper's JSON API sends them."""
    if input_type is not InputType.JSON:
        return elements
    rows = []
    for i, text in enumerate(elements):
        try:
            rows.append(orjson.dumps(orjson.loads(text)))
        except orjson.JSONDecodeError as e:
            raise InvalidInput(f"inputs[0] element {i} is not a JSON document: {e}") from e
    return rows


def default_text(default_output: bytes) -> bytes:
    """The app's default output as its text: the route holds it as JSON, so a JSON string is unquoted."""
    value = orjson.loads(default_output)
    return value.encode() if isinstance(value, str) else default_output


def render_outputs(
    answers: Sequence[Answer | None], default_output: bytes, wanted: dict[str, bool]
) -> tuple[list[dict[str, Any]], bytes, list[DefaultAnswer]]:
    """The response's `outputs`, the binary data that follows the JSON (empty if none is binary), and the
    default answers among `answers` (for the metrics); `default_output` is the app's, as JSON."""
    texts: list[bytes] = []
    defaults: list[bool] = []
    default_answers: list[DefaultAnswer] = []
    default = b""
    for answer in answers:
        if isinstance(answer, DefaultAnswer):
            if not default_answers:  # most answers hold none: decode the default only when one does
                default = default_text(default_output)
            default_answers.append(answer)
            defaults.append(True)
            texts.append(default)
        else:
            defaults.append(False)
            texts.append(answer.output if isinstance(answer, Explained) else answer or b"")
    n = len(texts)
    outputs, chunks = [], []
    for name, binary in wanted.items():
        out: dict[str, Any] = {
            "name": name,
            "datatype": "BYTES" if name == "output" else "BOOL",
            "shape": [n],
        }
        if binary:
            chunk = b"".join(_LENGTH.pack(len(t)) + t for t in texts) if name == "output" else bytes(defaults)
            out["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            out["data"] = [t.decode(errors="replace") for t in texts] if name == "output" else defaults
        outputs.append(out)
    return outputs, b"".join(chunks), default_answers
