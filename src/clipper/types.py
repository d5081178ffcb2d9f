"""Clipper's input types: names, aliases and RPC v3 codes (reference §3, §4.2), plus our `json` (code 5)."""

from __future__ import annotations

import enum

from clipper.errors import InvalidInput

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # the range of Clipper's integers, on the wire and in the API
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: larger numbers are not Clipper floats


class InputType(enum.IntEnum):
    """Clipper's five input types and our `json`; the value is the RPC v3 data-type code."""

    BYTES = 0
    INTEGERS = 1
    FLOATS = 2
    DOUBLES = 3
    STRINGS = 4
    JSON = 5  # ours: any JSON value per input, its UTF-8 JSON bytes on the wire

    @property
    def is_numeric(self) -> bool:
        """Whether inputs are flat little-endian numbers, the types that may declare an `input_shape`."""
        return self <= InputType.DOUBLES

    @property
    def wire_name(self) -> str:
        """The normalised name Clipper stores and returns (`doubles`, `strings`, ...)."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> InputType:
        """Accept Clipper's spellings (`d`, `double`, `doubles`, ...); raise InvalidInput otherwise."""
        found = _ALIASES.get(value)
        if found is None:
            raise InvalidInput(
                f"Invalid input_type '{value}'. Use one of: bytes, integers, floats, doubles, strings, json"
            )
        return found

    @classmethod
    def spellings(cls) -> tuple[str, ...]:
        """Every name `parse` accepts, for the management API's OpenAPI enum."""
        return tuple(_ALIASES)

    @classmethod
    def parse_env(cls, value: str) -> InputType:
        """Container-side parsing: case-insensitive and trimmed, as Clipper's runtime does."""
        return cls.parse(value.strip().lower())


def parse_input_shape(value: str | None) -> tuple[int, ...] | None:
    """`CLIPPER_INPUT_SHAPE` (`28,28`) as a tuple of positive ints; None or empty: unshaped."""
    if not value or not value.strip():
        return None
    try:
        shape = tuple(int(part) for part in value.split(","))
    except ValueError:
        shape = ()
    if not shape or any(n <= 0 for n in shape):
        raise InvalidInput(
            f"Invalid input_shape '{value}': use positive integers separated by commas, e.g. 28,28"
        )
    return shape


_ALIASES: dict[str, InputType] = {
    **dict.fromkeys(("bytes", "byte", "b"), InputType.BYTES),
    **dict.fromkeys(("integers", "ints", "integer", "int", "i"), InputType.INTEGERS),
    **dict.fromkeys(("floats", "float", "f"), InputType.FLOATS),
    **dict.fromkeys(("doubles", "double", "d"), InputType.DOUBLES),
    **dict.fromkeys(("strings", "string", "str", "strs", "s"), InputType.STRINGS),
    **dict.fromkeys(("json", "j"), InputType.JSON),
}
