"""Exp3 (Auer et al.), as in the Clipper paper: a bandit over the linked models that learns from rewards.

Each model i has a weight w_i; a query goes to i with probability p_i = (1 - γ) w_i / Σw + γ / K. Feedback
rewards only the chosen model, importance-weighted: x = r / p_chosen, w_chosen *= exp(γ x / K). Since
p ≥ γ/K, one observation multiplies a weight by at most e; weights are normalised and floored after each
update, so none overflows and none sinks so low that a model which improves cannot win again.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

from clipper.selection.base import (
    NO_PLAN,
    Combined,
    PerModels,
    Plan,
    State,
    check_reward,
    normalised,
    stored_weights,
)
from clipper.selection.params import flag, number, only_keys

DEFAULT_GAMMA = 0.1


def check(params: Mapping[str, Any], models: Sequence[str]) -> dict[str, Any]:
    """`gamma` in (0, 1] (exploration), `per_user` (state per uid), `error_scale` > 0 (numeric rewards)."""
    only_keys("exp3", params, ("gamma", "per_user", "error_scale"))
    return {
        "gamma": number("gamma", params.get("gamma", DEFAULT_GAMMA), low=0.0, high=1.0, low_open=True),
        "per_user": flag("per_user", params.get("per_user", False)),
        "error_scale": number("error_scale", params.get("error_scale", 1.0), low=0.0, low_open=True),
    }


class Exp3Policy:
    """Draws one model per query from the Exp3 probabilities of the state (the app's or the user's)."""

    name = "exp3"
    takes_feedback = True
    asks_every_model = False

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.gamma = float(params.get("gamma", DEFAULT_GAMMA))
        self.per_user = bool(params.get("per_user", False))
        self._plans = PerModels(lambda arms: [Plan(m) for m in arms])
        # the last weights seen and their cumulative probabilities: states are values, so identity suffices
        self._seen: tuple[object, tuple[str, ...], list[float]] | None = None

    def probabilities(self, state: State, models: Sequence[str]) -> list[float]:
        """p_i for each linked model, in the order of `models`."""
        arms = tuple(models)
        if not arms:
            return []
        w = stored_weights(state, arms)
        total = sum(w)
        k = len(arms)
        explore = self.gamma / k
        if not (math.isfinite(total) and total > 0.0):
            return [1.0 / k] * k
        keep = (1.0 - self.gamma) / total
        return [keep * x + explore for x in w]

    def initial_state(self, models: Sequence[str]) -> State:
        """Equal weights: every model starts equally likely."""
        return {"weights": normalised(dict.fromkeys(models, 1.0))}

    def plan(self, state: State, models: Sequence[str], uid: str | None, rng: random.Random) -> Plan:
        """One model drawn by p (the caller picks the app's or the user's state)."""
        plans = self._plans.get(models)
        if not plans:
            return NO_PLAN
        arms = tuple(models)
        weights = state.get("weights")
        seen = self._seen
        if seen is not None and seen[0] is weights and seen[1] == arms:
            bounds = seen[2]
        else:
            bounds = []
            acc = 0.0
            for p in self.probabilities(state, arms)[:-1]:
                acc += p
                bounds.append(acc)
            self._seen = (weights, arms, bounds)
        return plans[bisect_right(bounds, rng.random())]

    def combine(self, state: State, models: Sequence[str], answers: Mapping[str, bytes]) -> Combined:
        """Exp3 plans one model per query; nothing to combine."""
        raise TypeError("the exp3 policy never plans an ensemble")

    def update(
        self, state: State, models: Sequence[str], chosen: str | None, rewards: Mapping[str, float]
    ) -> State:
        """Reward the chosen model by r / p_chosen; unchanged when no linked model was chosen or rewarded."""
        arms = tuple(models)
        if chosen is None or chosen not in arms or chosen not in rewards:
            return state
        r = check_reward(chosen, rewards[chosen])
        i = arms.index(chosen)
        p = self.probabilities(state, arms)[i]
        w = stored_weights(state, arms)
        w[i] *= math.exp(self.gamma * (r / p) / len(arms))
        return {"weights": normalised(dict(zip(arms, w, strict=True)))}

    def weights(self, state: State, models: Sequence[str]) -> dict[str, float]:
        """Each linked model's selection probability."""
        return dict(zip(models, self.probabilities(state, models), strict=True))
