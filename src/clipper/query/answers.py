"""What a query is answered with: a model's raw output, or the app's default output and why."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import orjson

logger = logging.getLogger(__name__)

NO_MODEL = "No connected models found for query"
SLO_MISSED = "Failed to retrieve a prediction response within the specified latency SLO"
OVERLOADED = "The model's queue is full; answered with the default output at once"


@dataclass(slots=True, frozen=True)
class DefaultAnswer:
    """The app's default output was used; `explanation` says why (Clipper's texts where it had them) and
    `reason` names the cause in one word, for metrics (`slo`, `no_model`, `overloaded`, ...)."""

    explanation: str
    reason: str


@dataclass(slots=True, frozen=True)
class Explained:
    """A model output that comes with a note, e.g. an ensemble that combined only the models in time."""

    output: bytes
    explanation: str


NO_MODEL_ANSWER = DefaultAnswer(NO_MODEL, "no_model")
SLO_ANSWER = DefaultAnswer(SLO_MISSED, "slo")
OVERLOAD_ANSWER = DefaultAnswer(OVERLOADED, "overloaded")

Answer = bytes | DefaultAnswer | Explained
Fallback = Callable[[], Answer]  # what an unanswered slot gets at the SLO instead of the default output


class PendingRequest:
    """One client request's queries, answered together: when all are in, or when the SLO timer fires.

    `on_done` runs once, synchronously, when the last slot is filled: the answer goes out in the same
    loop iteration that produced it, without a future and a scheduled callback per request.
    """

    __slots__ = ("answers", "default_output", "fallbacks", "first_query_id", "on_done", "remaining")

    def __init__(
        self,
        n: int,
        default_output: bytes,
        first_query_id: int,
        on_done: Callable[[PendingRequest], None],
    ) -> None:
        self.answers: list[Answer | None] = [None] * n
        self.remaining = n
        self.default_output = default_output
        self.first_query_id = first_query_id
        self.on_done = on_done
        self.fallbacks: list[Fallback | None] | None = None  # per slot, set by selection policies
        if n == 0:
            self._complete()

    @property
    def finished(self) -> bool:
        return self.remaining == 0

    def resolve(self, index: int, answer: Answer) -> None:
        """Record one answer; the first answer for a slot wins, late ones are dropped."""
        if self.answers[index] is not None:
            return
        self.answers[index] = answer
        self.remaining -= 1
        if self.remaining == 0:
            self._complete()

    def expire(self) -> None:
        """The SLO passed: every unanswered slot gets its fallback's answer, or the default output."""
        if self.remaining == 0:
            return
        fallbacks = self.fallbacks
        for i, answer in enumerate(self.answers):
            if answer is None:
                fallback = fallbacks[i] if fallbacks is not None else None
                self.answers[i] = fallback() if fallback is not None else SLO_ANSWER
        self.remaining = 0
        self._complete()

    def _complete(self) -> None:
        # on_done runs inside the processor's loops (a batch's answers, a timer's expiries): an error in
        # answering one client must not leave the others of the batch unanswered.
        try:
            self.on_done(self)
        except Exception:
            logger.exception("Answering query %d failed", self.first_query_id)


class SloTimers:
    """Expires requests at their deadlines with one loop timer per SLO value, not one per request.

    Requests with the same SLO arrive in deadline order, so each SLO's requests form a FIFO whose head
    holds the next deadline; answered requests leave from the head as it passes them.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Callable[[], int]) -> None:
        self._loop = loop
        self._clock = clock
        self._fifos: dict[int, deque[tuple[int, PendingRequest]]] = {}
        self._armed: set[int] = set()

    def add(self, slo_ns: int, deadline_ns: int, request: PendingRequest) -> None:
        fifo = self._fifos.get(slo_ns)
        if fifo is None:
            fifo = self._fifos[slo_ns] = deque()
        while fifo and fifo[0][1].finished:
            fifo.popleft()
        fifo.append((deadline_ns, request))
        if slo_ns not in self._armed:
            self._arm(slo_ns, deadline_ns)

    def _arm(self, slo_ns: int, deadline_ns: int) -> None:
        self._armed.add(slo_ns)
        delay_s = max(0.0, (deadline_ns - self._clock()) / 1e9)
        self._loop.call_later(delay_s, self._fire, slo_ns)

    def _fire(self, slo_ns: int) -> None:
        self._armed.discard(slo_ns)
        fifo = self._fifos[slo_ns]
        now = self._clock()
        while fifo and (fifo[0][0] <= now or fifo[0][1].finished):
            _, request = fifo.popleft()
            request.expire()
        if fifo:
            self._arm(slo_ns, fifo[0][0])


def embed_json(output: bytes) -> bytes:
    """Clipper's rule: an output that parses as JSON is embedded as JSON, anything else as a string."""
    try:
        orjson.loads(output)
    except orjson.JSONDecodeError:
        return orjson.dumps(output.decode(errors="replace"))
    return output
