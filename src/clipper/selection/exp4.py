"""Exp4-style ensemble, as in the Clipper paper: every linked model answers, outputs are combined by weights
learned from feedback (multiplicative weights: w_i *= exp(-η (1 - r_i)), normalised and floored).

At the SLO the caller combines whatever has arrived (straggler mitigation) and the explanation names the
missing models; when the answering models agree less than `confidence`, the default output answers.
"""

from __future__ import annotations

import math
import random
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
    parse_number,
    stored_weights,
)
from clipper.selection.params import flag, number, only_keys

DEFAULT_ETA = 0.5
DEFAULT_TOLERANCE = 0.1
COMBINE_MODES = ("auto", "vote")


def check(params: Mapping[str, Any], models: Sequence[str]) -> dict[str, Any]:
    """`eta` > 0, `confidence` in [0, 1], `tolerance` >= 0, `per_user`, `error_scale` > 0, and `combine`:
    "auto" (mean of numbers, vote on anything else) or "vote" (class labels that happen to be numbers)."""
    only_keys("exp4", params, ("eta", "confidence", "tolerance", "per_user", "error_scale", "combine"))
    mode = params.get("combine", "auto")
    if mode not in COMBINE_MODES:
        raise ValueError(f"combine: must be one of {', '.join(COMBINE_MODES)}, got {mode!r}")
    return {
        "eta": number("eta", params.get("eta", DEFAULT_ETA), low=0.0, low_open=True),
        "confidence": number("confidence", params.get("confidence", 0.0), low=0.0, high=1.0),
        "tolerance": number("tolerance", params.get("tolerance", DEFAULT_TOLERANCE), low=0.0),
        "per_user": flag("per_user", params.get("per_user", False)),
        "error_scale": number("error_scale", params.get("error_scale", 1.0), low=0.0, low_open=True),
        "combine": mode,
    }


def format_number(value: float) -> bytes:
    """A combined number as JSON text: integral values without a fraction, as the models likely wrote them."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value)).encode()
    return repr(value).encode()


class Exp4Policy:
    """Plans every linked model as one ensemble and combines their outputs by learned weights."""

    name = "exp4"
    takes_feedback = True
    asks_every_model = True

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.eta = float(params.get("eta", DEFAULT_ETA))
        self.confidence = float(params.get("confidence", 0.0))
        self.tolerance = float(params.get("tolerance", DEFAULT_TOLERANCE))
        self.per_user = bool(params.get("per_user", False))
        self.vote_only = params.get("combine", "auto") == "vote"
        self._plans = PerModels(lambda arms: Plan(None, ensemble=arms) if arms else NO_PLAN)

    def initial_state(self, models: Sequence[str]) -> State:
        """Equal weights: every model's output counts the same until feedback says otherwise."""
        return {"weights": normalised(dict.fromkeys(models, 1.0))}

    def plan(self, state: State, models: Sequence[str], uid: str | None, rng: random.Random) -> Plan:
        """All linked models, together."""
        return self._plans.get(models)

    def combine(self, state: State, models: Sequence[str], answers: Mapping[str, bytes]) -> Combined:
        """Weighted vote (labels) or weighted mean (numbers) of the models that answered."""
        arms = tuple(models)
        got = [(m, w) for m, w in zip(arms, stored_weights(state, arms), strict=True) if m in answers]
        if not got:
            return Combined(None, "no model answered")
        total = sum(w for _, w in got)
        parsed = () if self.vote_only else (parse_number(answers[m]) for m, _ in got)
        values = [y for y in parsed if y is not None]
        mean: float | None = None
        if len(values) == len(got):
            mean = sum(w * y for (_, w), y in zip(got, values, strict=True)) / total
            near = self.tolerance * max(abs(mean), 1.0)  # relative, but absolute for values within ±1
            share = sum(w for (_, w), y in zip(got, values, strict=True) if abs(y - mean) <= near) / total
            output = format_number(mean)
        else:
            votes: dict[bytes, float] = {}
            first: dict[bytes, bytes] = {}
            for m, w in got:
                key = answers[m].strip()
                votes[key] = votes.get(key, 0.0) + w
                first.setdefault(key, answers[m])
            top = max(votes, key=votes.__getitem__)  # ties: the first model's answer in link order
            share = votes[top] / total
            output = first[top]
        partial = None
        if len(got) < len(arms):
            missing = ", ".join(m for m in arms if m not in answers)
            partial = f"combined {len(got)} of {len(arms)} models; no answer from {missing}"
        if share >= self.confidence:
            return Combined(output, partial)
        what = "top answer" if mean is None else f"weighted mean {mean:g}"
        disagree = (
            f"models disagree: the {what} has {share:.0%} of the weight, "
            f"below the confidence {self.confidence:.0%}"
        )
        return Combined(None, disagree if partial is None else f"{disagree}; {partial}")

    def update(
        self, state: State, models: Sequence[str], chosen: str | None, rewards: Mapping[str, float]
    ) -> State:
        """w_i *= exp(-η (1 - r_i)) for every linked model with a reward; others keep their weight."""
        arms = tuple(models)
        w = dict(zip(arms, stored_weights(state, arms), strict=True))
        for m, r in rewards.items():
            if m in w:
                w[m] *= math.exp(-self.eta * (1.0 - check_reward(m, r)))
        return {"weights": normalised(w)}

    def weights(self, state: State, models: Sequence[str]) -> dict[str, float]:
        """Each linked model's share of the vote."""
        arms = tuple(models)
        return normalised(dict(zip(arms, stored_weights(state, arms), strict=True)))
