"""Model outputs -> the bytes a container sends: text as it is, anything else as its JSON.

A predict function should return strings (Clipper's contract); the frontend embeds an output that parses as
JSON as JSON and any other text as a JSON string. A dict, list, number, boolean, None or numpy value is sent
as its JSON text, so it reaches the client as that JSON value, not as Python's `str()` of it ("{'a': 1}",
"True", "[0.1 0.2]"). Bytes go as they are.
"""

from __future__ import annotations

import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def encode_output(value: object) -> bytes:
    """One output's bytes: UTF-8 text for a str, the bytes themselves, else JSON (str() if not JSON-able)."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return str(value).encode()
