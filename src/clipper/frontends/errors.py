"""The only module that knows both domain errors and HTTP: one table per edge, looked up along the MRO.

Free of web frameworks, so the query frontend (which has none) and the management API share it.
"""

from __future__ import annotations

from typing import TypeVar

import orjson

from clipper.errors import (
    CannotManageReplicas,
    ClipperError,
    ClusterError,
    ConfigConflict,
    InUse,
    InvalidInput,
    Overloaded,
    UnknownApp,
    UnknownVersion,
)
from clipper.query.inputs import TooManyInputs
from clipper.selection import NoFeedback

# Query edge: status and Clipper's `error` name of the `{"error": ..., "cause": ...}` body (reference §2.6).
HTTP_ERRORS: dict[type[ClipperError], tuple[int, str]] = {
    TooManyInputs: (413, "Request too large"),  # not 503: a retry of the same batch can never pass
    NoFeedback: (400, "Feedback not taken"),
    InvalidInput: (400, "Json error"),
    UnknownVersion: (400, "Query processing error"),
    UnknownApp: (404, "Unknown application"),
    ConfigConflict: (409, "Conflict"),
    Overloaded: (503, "Overloaded"),
    ClusterError: (500, "Cluster error"),
    ClipperError: (500, "Internal error"),
}

# Open Inference Protocol edge (`/v2`): the status of its `{"error": <message>}` body.
OIP_ERRORS: dict[type[ClipperError], int] = {
    TooManyInputs: 413,
    InvalidInput: 400,
    UnknownVersion: 404,
    UnknownApp: 404,
    Overloaded: 503,
    ClipperError: 500,
}

# Management edge: Clipper answers every rejected /admin call with 400 and the message as plain text
# (reference §3), and a Clipper 0.4 client only checks `status != 200`, so one status fits all.
# One exception: a refusal to take away what serves gets 409, which a Clipper client also reads as an error.
MANAGEMENT_ERRORS: dict[type[ClipperError], int] = {
    InUse: 409,
    CannotManageReplicas: 501,
    ClipperError: 400,
}


V = TypeVar("V")


def lookup(table: dict[type[ClipperError], V], exc: ClipperError) -> V:
    """The entry of the nearest class of `exc` in `table` (as Starlette finds exception handlers)."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    raise LookupError(f"no HTTP mapping for {type(exc).__name__}")


def error_body(error: str, cause: str) -> bytes:
    """Clipper's JSON error body: `{"error": <name>, "cause": <message>}`."""
    return orjson.dumps({"error": error, "cause": cause})
