"""Clipper's policy: the one linked model answers, or the default output; nothing is learned."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from clipper.selection.base import DEFAULT_POLICY, NO_PLAN, FixedPolicy, PerModels, Plan, State
from clipper.selection.params import only_keys


def check(params: Mapping[str, Any], models: Sequence[str]) -> dict[str, Any]:
    """The default policy takes no parameters."""
    only_keys("default", params, ())
    return {}


def _first(models: tuple[str, ...]) -> Plan:
    return Plan(models[0]) if models else NO_PLAN


class DefaultPolicy(FixedPolicy):
    """Plans every query for the first (Clipper: the only) linked model."""

    name = DEFAULT_POLICY

    def __init__(self) -> None:
        self._plans = PerModels(_first)

    def plan(self, state: State, models: Sequence[str], uid: str | None, rng: random.Random) -> Plan:
        """The first linked model answers."""
        return self._plans.get(models)

    def weights(self, state: State, models: Sequence[str]) -> dict[str, float]:
        """All traffic goes to the first linked model."""
        first = self._plans.get(models).answer_from
        return {m: 1.0 if m == first else 0.0 for m in models}
