"""The one exception hierarchy; HTTP statuses and exit codes are assigned only at the edges."""

from __future__ import annotations


class ClipperError(Exception):
    """Root of every error clipper raises on purpose."""

    def __init__(self, msg: str, *args: object) -> None:
        super().__init__(msg, *args)
        self.msg = msg

    def __str__(self) -> str:
        return self.msg


ClipperException = ClipperError
"""Clipper 0.4's name for the root: `except ClipperException` catches every error clipper raises."""


class InvalidInput(ClipperError):
    """A request body or argument is malformed; the message names the field and the problem."""


class UnknownApp(ClipperError):
    """No application with this name is registered."""


class UnknownVersion(ClipperError):
    """A query asked for a model version that has no containers or does not exist."""


class Overloaded(ClipperError):
    """A queue is full; the caller should retry after a short wait."""


class ConfigConflict(ClipperError):
    """A management request conflicts with the stored state (exists already, missing, incompatible)."""


class InUse(ConfigConflict):
    """The request would take away what serves (the current version); the message says what to do first."""


class ClusterError(ClipperError):
    """Starting, finding or stopping the processes or containers of a cluster failed."""


class CannotManageReplicas(ClusterError):
    """This management frontend was started without a way to act on the cluster's containers; the message
    says how to enable it."""
