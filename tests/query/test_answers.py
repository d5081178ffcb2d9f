"""Pending requests and the SLO timers that answer them with the default output."""

import asyncio
import time

from clipper.query.answers import SLO_ANSWER, PendingRequest, SloTimers, embed_json


async def test_unanswered_slots_get_the_slo_default_and_answered_ones_keep_their_answer():
    loop = asyncio.get_running_loop()
    timers = SloTimers(loop, time.monotonic_ns)
    slo_ns = 20_000_000
    first = PendingRequest(2, b"-1", 0, loop)
    second = PendingRequest(1, b"-1", 2, loop)
    timers.add(slo_ns, time.monotonic_ns() + slo_ns, first)
    timers.add(slo_ns, time.monotonic_ns() + slo_ns, second)
    first.resolve(0, b"7")
    second.resolve(0, b"8")  # answered in time: its deadline passes without effect
    await asyncio.wait_for(first.done, 5)
    assert first.answers == [b"7", SLO_ANSWER]
    assert second.answers == [b"8"]


async def test_each_slo_value_has_its_own_order():
    loop = asyncio.get_running_loop()
    timers = SloTimers(loop, time.monotonic_ns)
    slow, fast = PendingRequest(1, b"0", 0, loop), PendingRequest(1, b"0", 1, loop)
    now = time.monotonic_ns()
    timers.add(10_000_000_000, now + 10_000_000_000, slow)
    timers.add(10_000_000, now + 10_000_000, fast)
    await asyncio.wait_for(fast.done, 5)
    assert fast.answers == [SLO_ANSWER] and not slow.done.done()


def test_outputs_that_parse_as_json_are_embedded_as_json():
    assert embed_json(b"3.0") == b"3.0"
    assert embed_json(b"[1,2]") == b"[1,2]"
    assert embed_json(b"cat") == b'"cat"'
    assert embed_json(b"{'a': 1}") == b"\"{'a': 1}\""
