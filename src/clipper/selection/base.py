"""What every selection policy shares: the plan and combination records, the protocol, the reward.

Policies are pure: state comes in and goes out as JSON-able dicts, and a state is a value (never changed in
place; `update` returns a new one), so a policy may remember what it derived from the last state it saw.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from clipper.errors import ClipperError

DEFAULT_POLICY = "DefaultOutputSelectionPolicy"
WEIGHT_FLOOR = 1e-3
"""Least share of the total a learned weight keeps, so a model written off can win again when it improves."""

State = dict[str, Any]
_NUMBER_START = frozenset(bytes([c]) for c in b"+-.0123456789 \t\r\n")  # what float() may start with
T = TypeVar("T")


class NoFeedback(ClipperError):
    """The app's policy learns nothing from feedback (default, split, shadow)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Which models one query goes to, and which of them answers."""

    answer_from: str | None
    shadows: tuple[str, ...] = ()
    ensemble: tuple[str, ...] = ()


NO_PLAN = Plan(None)
"""No linked model can answer: the query gets the app's default output."""


@dataclass(frozen=True, slots=True)
class Combined:
    """An ensemble's answer; `output` None means answer with the default output, `explanation` says why."""

    output: bytes | None
    explanation: str | None


class Policy(Protocol):
    """Chooses or combines an app's linked models per query and learns from feedback rewards."""

    name: str
    takes_feedback: bool
    per_user: bool
    asks_every_model: bool  # each query goes to all linked models (shadows, ensembles), not to one

    def initial_state(self, models: Sequence[str]) -> State:
        """State for an app (or a user) that has had no feedback yet."""
        ...

    def plan(self, state: State, models: Sequence[str], uid: str | None, rng: random.Random) -> Plan:
        """The models one query goes to; runs per query, so it must stay cheap."""
        ...

    def combine(self, state: State, models: Sequence[str], answers: Mapping[str, bytes]) -> Combined:
        """One answer from the outputs of the ensemble's models that answered (maybe not all)."""
        ...

    def update(
        self, state: State, models: Sequence[str], chosen: str | None, rewards: Mapping[str, float]
    ) -> State:
        """The state after feedback: `rewards` in [0, 1] per model; raises NoFeedback if none is taken."""
        ...

    def weights(self, state: State, models: Sequence[str]) -> dict[str, float]:
        """Each linked model's share (selection probability or ensemble weight), for metrics and the CLI."""
        ...


class FixedPolicy:
    """What the policies that learn nothing share (default, split, shadow): no state, no feedback, and one
    answering model per query, never an ensemble."""

    name: str
    takes_feedback = False
    per_user = False
    asks_every_model = False

    def initial_state(self, models: Sequence[str]) -> State:
        """Nothing is learned, so there is no state."""
        return {}

    def combine(self, state: State, models: Sequence[str], answers: Mapping[str, bytes]) -> Combined:
        """Only ensembles are combined, and these policies never plan one."""
        raise TypeError(f"the {self.name} policy never plans an ensemble")

    def update(
        self, state: State, models: Sequence[str], chosen: str | None, rewards: Mapping[str, float]
    ) -> State:
        """Feedback is not taken (the feedback route refuses it first, by `takes_feedback`)."""
        raise NoFeedback(f"the {self.name} policy takes no feedback")


class PerModels(Generic[T]):
    """A value derived from the linked models, rebuilt only when they change: plans run per query, links
    change rarely."""

    __slots__ = ("_build", "_key", "_value")

    def __init__(self, build: Callable[[tuple[str, ...]], T]) -> None:
        self._build = build
        self._key: tuple[str, ...] | None = None
        self._value: T | None = None

    def get(self, models: Sequence[str]) -> T:
        """The value for these models (a tuple is compared, never copied)."""
        key = tuple(models)
        if key != self._key or self._value is None:
            self._value = self._build(key)
            self._key = key
        return self._value


def parse_number(output: bytes) -> float | None:
    """The finite number an output's text spells (a JSON number parses), or None for any other text."""
    if output[:1] not in _NUMBER_START:  # most labels: skip float()'s exception, the costly part
        return None
    try:
        value = float(output)
    except ValueError:
        return None
    if not math.isfinite(value) or b"_" in output:  # float() takes "1_000", JSON does not
        return None
    return value


def check_reward(model: str, value: float) -> float:
    """A reward as given to `update`, refused unless it is a number in [0, 1]."""
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise ValueError(f"rewards.{model}: must be a number in [0, 1], got {value!r}")
    return value


def normalised(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights scaled to sum to 1, none below WEIGHT_FLOOR (about): bounded, so each can come back."""
    if not weights:
        return {}
    total = math.fsum(weights.values())
    if not (math.isfinite(total) and total > 0.0):
        share = 1.0 / len(weights)
        return dict.fromkeys(weights, share)
    floored = {m: max(w / total, WEIGHT_FLOOR) for m, w in weights.items()}
    total = math.fsum(floored.values())
    return {m: w / total for m, w in floored.items()}


def stored_weights(state: State, arms: tuple[str, ...]) -> list[float]:
    """The state's weight of each linked model; a model linked since the state was written gets the mean
    weight of the others, so it starts as an average model."""
    stored: dict[str, float] = state.get("weights") or {}
    try:
        return [stored[m] for m in arms]
    except KeyError:
        known = [stored[m] for m in arms if m in stored]
        fallback = sum(known) / len(known) if known else 1.0
        return [stored.get(m, fallback) for m in arms]


def reward(output: bytes, label: float | str, params: Mapping[str, Any]) -> float:
    """How right one output was, in [0, 1]: equality for a label, a bounded error for a number.

    A number scores 1 - min(1, |y - label| / error_scale) (0 for an output that is not a number); a string
    label scores 1 when the output's text equals it (or both are the same number), else 0.
    """
    if isinstance(label, bool) or not isinstance(label, int | float | str):
        raise ValueError(f"label: must be a number or a string, got {type(label).__name__}")
    if isinstance(label, str):
        text = output.decode("utf-8", "replace").strip()
        wanted = label.strip()
        if text == wanted:
            return 1.0
        y = parse_number(output)
        return 1.0 if y is not None and y == parse_number(wanted.encode()) else 0.0
    if not math.isfinite(label):
        raise ValueError(f"label: must be a finite number, got {label!r}")
    y = parse_number(output)
    if y is None:
        return 0.0
    scale = float(params.get("error_scale", 1.0))
    return 1.0 - min(1.0, abs(y - label) / scale)
