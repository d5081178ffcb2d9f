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

POLICIES: tuple[str, ...] = (DEFAULT_POLICY, "split", "shadow", "exp3", "exp4")

_CHECKS: dict[str, Callable[[Mapping[str, Any], Sequence[str]], dict[str, Any]]] = {
    DEFAULT_POLICY: default.check,
    "split": split.check,
    "shadow": shadow.check,
    "exp3": exp3.check,
    "exp4": exp4.check,
}


def check_params(policy: str, params: dict[str, Any], models: Sequence[str]) -> dict[str, Any]:
    """Validated, normalised parameters (defaults filled in) for `policy` over the app's linked `models`;
    ValueError naming the field and the problem otherwise."""
    check = _CHECKS.get(policy)
    if check is None:
        raise ValueError(f"policy: unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if not isinstance(params, Mapping):
        raise ValueError(f"params: must be a JSON object, got {type(params).__name__}")
    return check(params, models)


def make_policy(policy: str, params: dict[str, Any]) -> Policy:
    """The policy object for parameters already passed through `check_params`."""
    if policy == DEFAULT_POLICY:
        return default.DefaultPolicy()
    if policy == "split":
        return split.SplitPolicy(params)
    if policy == "shadow":
        return shadow.ShadowPolicy(params)
    if policy == "exp3":
        return exp3.Exp3Policy(params)
    if policy == "exp4":
        return exp4.Exp4Policy(params)
    raise ValueError(f"policy: unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
