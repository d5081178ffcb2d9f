"""Answer from the primary model; candidate models get the same queries but never answer or delay."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from clipper.selection.base import FixedPolicy, PerModels, Plan, State
from clipper.selection.params import linked_model, only_keys


def check(params: Mapping[str, Any], models: Sequence[str]) -> dict[str, Any]:
    """`primary`: the linked model that answers; every other linked model is a shadow."""
    only_keys("shadow", params, ("primary",))
    if "primary" not in params:
        raise ValueError("primary: required, the linked model whose output answers")
    return {"primary": linked_model("primary", params["primary"], models)}


class ShadowPolicy(FixedPolicy):
    """Plans the primary as the answer and every other linked model as a shadow.

    If the primary is no longer linked, queries get the default output (the shadows still run), rather
    than a candidate's output that was never meant to answer.
    """

    name = "shadow"
    asks_every_model = True

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.primary: str = params["primary"]
        self._plans = PerModels(self._plan)

    def _plan(self, models: tuple[str, ...]) -> Plan:
        answer = self.primary if self.primary in models else None
        return Plan(answer, shadows=tuple(m for m in models if m != self.primary))

    def plan(self, state: State, models: Sequence[str], uid: str | None, rng: random.Random) -> Plan:
        """The same plan for every query."""
        return self._plans.get(models)

    def weights(self, state: State, models: Sequence[str]) -> dict[str, float]:
        """The primary answers every query; shadows answer none."""
        return {m: 1.0 if m == self.primary else 0.0 for m in models}
