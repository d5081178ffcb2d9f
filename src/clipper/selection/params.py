"""Checks shared by the policies' parameter validation; each error names the field and the problem."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def only_keys(policy: str, params: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Refuse a parameter the policy does not take (a typo would otherwise be silently ignored)."""
    allowed = tuple(allowed)
    for key in params:
        if key not in allowed:
            takes = ", ".join(allowed) if allowed else "no parameters"
            raise ValueError(f"{key}: unknown parameter of the {policy} policy (it takes {takes})")


def number(
    field: str,
    value: object,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number within [low, high] (an open end excludes its bound)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field}: must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open or math.isinf(high) else "]"
        upper = "inf" if math.isinf(high) else f"{high:g}"
        raise ValueError(f"{field}: must be in {left}{low:g}, {upper}{right}, got {value!r}")
    return float(value)


def flag(field: str, value: object) -> bool:
    """A JSON boolean (not 0/1 or "true", which are more likely a mistake than a choice)."""
    if not isinstance(value, bool):
        raise ValueError(f"{field}: must be true or false, got {value!r}")
    return value


def linked_model(field: str, value: object, models: Sequence[str]) -> str:
    """A model name that is linked to the app."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be a model name, got {value!r}")
    if value not in models:
        linked = ", ".join(models) if models else "none"
        raise ValueError(f"{field}: {value!r} is not a model linked to this app (linked: {linked})")
    return value
