"""Fixed traffic shares per model (A/B tests, canaries), sticky per user so a user stays on one arm."""

from __future__ import annotations

import random
import zlib
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

from clipper.selection.base import NO_PLAN, FixedPolicy, PerModels, Plan, State
from clipper.selection.params import linked_model, number, only_keys

_NO_USER = "0"  # Clipper's uid 0 means "no user": such queries are spread by draw, not pinned


def check(params: Mapping[str, Any], models: Sequence[str]) -> dict[str, Any]:
    """`weights`: {model: weight > 0} over linked models, normalised to sum to 1 (order kept)."""
    only_keys("split", params, ("weights",))
    weights = params.get("weights")
    if weights is None:
        raise ValueError('weights: required, the share of traffic per model, e.g. {"a": 0.9, "b": 0.1}')
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"weights: must be a non-empty object of model -> weight, got {weights!r}")
    checked = {
        linked_model(f"weights.{m}", m, models): number(f"weights.{m}", w, low=0.0, low_open=True)
        for m, w in weights.items()
    }
    total = sum(checked.values())
    return {"weights": {m: w / total for m, w in checked.items()}}


def uid_point(uid: str) -> float:
    """A user's fixed point in [0, 1): the same on every frontend and after restarts (not Python's hash)."""
    h = zlib.crc32(uid.encode())
    # murmur3's finaliser: crc32 is linear, so "1", "2", "3" would land in one narrow band
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h / 4294967296.0


class SplitPolicy(FixedPolicy):
    """Each query goes to one model drawn by the weights; a query with a uid always to that user's model.

    Users are laid on [0, 1) in the order of the weights, so raising a canary's share from 1% to 5% keeps
    its first 1% of users on it.
    """

    name = "split"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._weights: dict[str, float] = dict(params["weights"])
        self._tables = PerModels(self._table)

    def _table(self, models: tuple[str, ...]) -> tuple[list[float], list[Plan]]:
        """Upper bounds of each linked arm's interval (the last one, 1, left out) and its plan."""
        arms = [(m, w) for m, w in self._weights.items() if m in models]
        total = sum(w for _, w in arms)
        bounds: list[float] = []
        acc = 0.0
        for _, w in arms[:-1]:
            acc += w / total
            bounds.append(acc)
        return bounds, [Plan(m) for m, _ in arms]

    def plan(self, state: State, models: Sequence[str], uid: str | None, rng: random.Random) -> Plan:
        """The arm at the user's point, or at a random one for a query without a user."""
        bounds, plans = self._tables.get(models)
        if not plans:
            return NO_PLAN
        point = rng.random() if uid is None or uid == _NO_USER else uid_point(uid)
        return plans[bisect_right(bounds, point)]

    def weights(self, state: State, models: Sequence[str]) -> dict[str, float]:
        """Each linked model's share of traffic (the weights over the models linked now)."""
        bounds, plans = self._tables.get(models)
        edges = [0.0, *bounds, 1.0]
        shares = {p.answer_from: edges[i + 1] - edges[i] for i, p in enumerate(plans)}
        return {m: shares.get(m, 0.0) for m in models}
