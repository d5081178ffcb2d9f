"""Pending requests and the SLO timers that answer them with the default output."""

import asyncio
import time

from clipper.query.answers import SLO_ANSWER, PendingRequest, SloTimers, embed_json


class Completions(list[PendingRequest]):
    """Records each on_done call; `event` is set by the first."""

    def __init__(self) -> None:
        super().__init__()
        self.event = asyncio.Event()

    def __call__(self, request: PendingRequest) -> None:
        self.append(request)
        self.event.set()


def pending(n: int, first_query_id: int) -> tuple[PendingRequest, Completions]:
    calls = Completions()
    return PendingRequest(n, b"-1", first_query_id, calls), calls


async def first_call(calls: Completions) -> None:
    await asyncio.wait_for(calls.event.wait(), 5)


async def test_unanswered_slots_get_the_slo_default_and_answered_ones_keep_their_answer():
    loop = asyncio.get_running_loop()
    timers = SloTimers(loop, time.monotonic_ns)
    slo_ns = 20_000_000
    first, first_calls = pending(2, 0)
    second, second_calls = pending(1, 2)
    timers.add(slo_ns, time.monotonic_ns() + slo_ns, first)
    timers.add(slo_ns, time.monotonic_ns() + slo_ns, second)
    first.resolve(0, b"7")
    second.resolve(0, b"8")  # answered in time: done at once, and its deadline passes without effect
    assert second_calls == [second] and not first_calls
    await first_call(first_calls)
    assert first.answers == [b"7", SLO_ANSWER]
    assert second.answers == [b"8"]
    assert first_calls == [first] and second_calls == [second]  # each completes exactly once


async def test_each_slo_value_has_its_own_order():
    loop = asyncio.get_running_loop()
    timers = SloTimers(loop, time.monotonic_ns)
    slow, slow_calls = pending(1, 0)
    fast, fast_calls = pending(1, 1)
    now = time.monotonic_ns()
    timers.add(10_000_000_000, now + 10_000_000_000, slow)
    timers.add(10_000_000, now + 10_000_000, fast)
    await first_call(fast_calls)
    assert fast.answers == [SLO_ANSWER] and not slow.finished and not slow_calls


def test_late_answers_are_dropped_and_do_not_complete_twice():
    request, calls = pending(1, 0)
    request.expire()
    request.resolve(0, b"late")
    request.expire()
    assert request.answers == [SLO_ANSWER] and calls == [request]


def test_outputs_that_parse_as_json_are_embedded_as_json():
    assert embed_json(b"3.0") == b"3.0"
    assert embed_json(b"[1,2]") == b"[1,2]"
    assert embed_json(b"cat") == b'"cat"'
    assert embed_json(b"{'a': 1}") == b"\"{'a': 1}\""


def test_an_error_in_answering_one_request_is_logged_not_raised(caplog):
    """on_done runs inside the processor's loops; a failing one must not stop the others."""

    def broken(request: PendingRequest) -> None:
        raise RuntimeError("client gone")

    request = PendingRequest(1, b"-1", 7, broken)
    request.resolve(0, b"1")
    assert request.finished
    assert "Answering query 7 failed" in caplog.text
