"""What a query is answered with: a model's raw output, or the app's default output and why."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson

NO_MODEL = "No connected models found for query"
SLO_MISSED = "Failed to retrieve a prediction response within the specified latency SLO"
OVERLOADED = "The model's queue is full; answered with the default output at once"


@dataclass(slots=True, frozen=True)
class DefaultAnswer:
    """The app's default output was used; `explanation` says why (Clipper's texts where it had them)."""

    explanation: str


NO_MODEL_ANSWER = DefaultAnswer(NO_MODEL)
SLO_ANSWER = DefaultAnswer(SLO_MISSED)
OVERLOAD_ANSWER = DefaultAnswer(OVERLOADED)

Answer = bytes | DefaultAnswer


class PendingRequest:
    """One client request's queries, answered together: when all are in, or when the SLO timer fires."""

    __slots__ = ("answers", "default_output", "done", "first_query_id", "remaining", "timer")

    def __init__(
        self, n: int, default_output: bytes, first_query_id: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.answers: list[Answer | None] = [None] * n
        self.remaining = n
        self.default_output = default_output
        self.first_query_id = first_query_id
        self.done: asyncio.Future[None] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None
        if n == 0:
            self.done.set_result(None)

    def resolve(self, index: int, answer: Answer) -> None:
        """Record one answer; the first answer for a slot wins, late ones are dropped."""
        if self.answers[index] is not None:
            return
        self.answers[index] = answer
        self.remaining -= 1
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)
            if self.timer is not None:
                self.timer.cancel()

    def expire(self) -> None:
        """The SLO passed: every unanswered slot gets the default output."""
        for i, answer in enumerate(self.answers):
            if answer is None:
                self.answers[i] = SLO_ANSWER
        self.remaining = 0
        if not self.done.done():
            self.done.set_result(None)


def embed_json(output: bytes) -> bytes:
    """Clipper's rule: an output that parses as JSON is embedded as JSON, anything else as a string."""
    try:
        orjson.loads(output)
    except orjson.JSONDecodeError:
        return orjson.dumps(output.decode(errors="replace"))
    return output
