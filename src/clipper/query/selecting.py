"""An app's model selection on the query path: its policy and state as this frontend holds them, and the
waiters that turn several models' answers into one (an ensemble) or watch candidates (shadow).

A `Waiter` is anything a query's answer is handed to: the client's `PendingRequest`, or one of these.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from clipper.query.answers import SLO_ANSWER, Answer, DefaultAnswer, Explained, PendingRequest
from clipper.selection import Combined, Policy

USERS_KEPT = 100_000  # per-user states and recent choices held per app, least recently used dropped first
GLOBAL_UID = "0"  # Clipper's uid of an app's own state key `<app>:0:0`


class Waiter(Protocol):
    """Takes the answer of one query (slot `index` of whatever it collects)."""

    def resolve(self, index: int, answer: Answer) -> None: ...


@dataclass(slots=True, eq=False)
class Selection:
    """A multi-model app's policy, parameters and state on this frontend (state follows the store)."""

    policy: Policy
    models: tuple[str, ...]
    params: dict[str, Any]
    state: dict[str, Any]
    users: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    choices: OrderedDict[tuple[str, bytes], str] = field(default_factory=OrderedDict)
    rng: random.Random = field(default_factory=random.Random)

    @property
    def fanout(self) -> int:
        """The most queries one input may become: every model for shadow and ensembles, else one."""
        return len(self.models) if self.policy.asks_every_model else 1

    def state_for(self, uid: str | None) -> dict[str, Any]:
        """The user's state when the policy keeps one per user and this frontend holds it, else the app's."""
        if uid is None or not self.policy.per_user:
            return self.state
        found = self.users.get(uid)
        return self.state if found is None else found

    def set_state(self, uid: str, state: dict[str, Any] | None) -> None:
        """Hold a state read from the store; None (a reset) falls back to the policy's initial one."""
        if uid == GLOBAL_UID:
            self.state = state if state is not None else self.policy.initial_state(self.models)
            return
        if state is None:
            self.users.pop(uid, None)
            return
        self.users[uid] = state
        self.users.move_to_end(uid)
        if len(self.users) > USERS_KEPT:
            self.users.popitem(last=False)

    def remember_choice(self, uid: str | None, data: bytes, model: str) -> None:
        """Which model answered this user's input: feedback on it updates that arm (exp3)."""
        key = (uid or GLOBAL_UID, data)
        self.choices[key] = model
        if len(self.choices) > USERS_KEPT:
            self.choices.popitem(last=False)

    def choice(self, uid: str | None, data: bytes) -> str | None:
        return self.choices.get((uid or GLOBAL_UID, data))


def as_answer(combined: Combined) -> Answer:
    """A policy's combination as the client's answer: the output (with its note), or the default."""
    if combined.output is None:
        return DefaultAnswer(combined.explanation or "the models disagree", "no_agreement")
    if combined.explanation:
        return Explained(combined.output, combined.explanation)
    return combined.output


class Ensemble:
    """One input asked of several models; answers the client's slot with their combination, when all are in
    or at the SLO with those that arrived (the paper's straggler mitigation)."""

    __slots__ = ("_combine", "_index", "_missing", "_outputs", "_request", "models")

    def __init__(
        self,
        models: tuple[str, ...],
        combine: Callable[[dict[str, bytes]], Combined],
        request: PendingRequest,
        index: int,
    ) -> None:
        self.models = models
        self._combine = combine
        self._request = request
        self._index = index
        self._outputs: dict[str, bytes] = {}
        self._missing = len(models)

    def resolve(self, index: int, answer: Answer) -> None:
        """Answer of model `models[index]`; a default answer counts as none."""
        if self._missing == 0:
            return
        output = answer.output if isinstance(answer, Explained) else answer
        if isinstance(output, bytes):
            self._outputs[self.models[index]] = output
        self._missing -= 1
        if self._missing == 0:
            self._request.resolve(self._index, self.partial())

    def partial(self) -> Answer:
        """The combination of what has arrived; the default output if nothing has."""
        if not self._outputs:
            return SLO_ANSWER
        return as_answer(self._combine(self._outputs))


class ShadowWatch:
    """Compares the candidates' outputs for one input with the primary's; it never answers the client.

    Slot 0 is the primary, slot j the candidate `shadows[j - 1]`; `record(model, agreed)` is told once per
    candidate whose output and the primary's both arrived.
    """

    __slots__ = ("_outputs", "_record", "shadows")

    def __init__(self, shadows: tuple[str, ...], record: Callable[[str, bool], None]) -> None:
        self.shadows = shadows
        self._record = record
        self._outputs: list[bytes | None] = [None] * (len(shadows) + 1)

    def resolve(self, index: int, answer: Answer) -> None:
        output = answer.output if isinstance(answer, Explained) else answer
        if not isinstance(output, bytes) or self._outputs[index] is not None:
            return
        self._outputs[index] = output
        primary = self._outputs[0]
        if primary is None:
            return
        if index == 0:
            for j, candidate in enumerate(self._outputs[1:], 1):
                if candidate is not None:
                    self._record(self.shadows[j - 1], candidate == primary)
        else:
            self._record(self.shadows[index - 1], output == primary)
