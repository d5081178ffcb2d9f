"""The admin client's exceptions under Clipper 0.4's names; ClipperException is clipper's root error."""

from __future__ import annotations

from clipper.errors import ClipperException

__all__ = ["ClipperException", "UnconnectedException"]


class UnconnectedException(ClipperException):
    """Raised by every call that needs a cluster before `connect()` or `start_clipper()`."""

    def __init__(self, *args: object) -> None:
        message = (
            "No connection to Clipper cluster. Call ClipperConnection.connect to "
            "connect to an existing cluster or ClipperConnnection.start_clipper to "
            "create a new one"
        )
        self.message = message
        super().__init__(message, *args)
