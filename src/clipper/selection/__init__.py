"""Model selection: which linked models answer a query, and how they learn from feedback (issue 14).

Pure code, no I/O: the query path calls `plan` per query and `combine` per ensemble answer, the feedback
route calls `reward` and `update`, the management API calls `check_params` before it stores a policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from clipper.selection import default, exp3, exp4, shadow, split
from clipper.selection.base import DEFAULT_POLICY, Combined, NoFeedback, Plan, Policy, reward

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "Combined",
    "NoFeedback",
    "Plan",
    "Policy",
    "check_params",
    "make_policy",
    "reward",
]

_Check = Callable[[Mapping[str, Any], Sequence[str]], dict[str, Any]]
_Make = Callable[[dict[str, Any]], Policy]

# each policy: its parameter check and its constructor (one place to add a policy)
_TABLE: dict[str, tuple[_Check, _Make]] = {
    DEFAULT_POLICY: (default.check, lambda _params: default.DefaultPolicy()),
    "split": (split.check, split.SplitPolicy),
    "shadow": (shadow.check, shadow.ShadowPolicy),
    "exp3": (exp3.check, exp3.Exp3Policy),
    "exp4": (exp4.check, exp4.Exp4Policy),
}
POLICIES: tuple[str, ...] = tuple(_TABLE)


def _entry(policy: str) -> tuple[_Check, _Make]:
    found = _TABLE.get(policy)
    if found is None:
        raise ValueError(f"policy: unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    return found


def check_params(policy: str, params: dict[str, Any], models: Sequence[str]) -> dict[str, Any]:
    """Validated, normalised parameters (defaults filled in) for `policy` over the app's linked `models`;
    ValueError naming the field and the problem otherwise."""
    check, _ = _entry(policy)
    if not isinstance(params, Mapping):
        raise ValueError(f"params: must be a JSON object, got {type(params).__name__}")
    return check(params, models)


def make_policy(policy: str, params: dict[str, Any]) -> Policy:
    """The policy object for parameters already passed through `check_params`."""
    _, make = _entry(policy)
    return make(params)
