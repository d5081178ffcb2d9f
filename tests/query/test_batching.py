"""AIMD batch sizing and the deadline queue."""

import pytest

from clipper.errors import Overloaded
from clipper.query.batching import AimdBatchSizer, DeadlineQueue


def test_aimd_grows_by_one_per_full_batch_within_deadline():
    sizer = AimdBatchSizer(max_size=8)
    for expected in (2, 3, 4):
        sizer.observe(sizer.limit, met_deadline=True)
        assert sizer.limit == expected


def test_aimd_does_not_grow_on_partial_batches():
    sizer = AimdBatchSizer(max_size=8)
    sizer.observe(1, True)  # a full batch of 1: the limit grows to 2
    sizer.observe(1, True)  # a batch of 1 under a limit of 2 says nothing about larger ones
    assert sizer.limit == 2


def test_aimd_cuts_ten_percent_on_a_missed_deadline_and_never_below_one():
    sizer = AimdBatchSizer(max_size=100)
    sizer.limit = 50
    sizer.observe(50, met_deadline=False)
    assert sizer.limit == 45
    sizer.limit = 1
    sizer.observe(1, met_deadline=False)
    assert sizer.limit == 1


def test_aimd_is_capped_and_fixed_sizes_never_move():
    sizer = AimdBatchSizer(max_size=2)
    for _ in range(5):
        sizer.observe(sizer.limit, True)
    assert sizer.limit == 2
    fixed = AimdBatchSizer(max_size=16, fixed=True)
    fixed.observe(16, False)
    assert fixed.limit == 16


def test_queue_orders_by_deadline_and_drops_expired():
    queue: DeadlineQueue[str] = DeadlineQueue(max_entries=10)
    queue.push(300, "late")
    queue.push(100, "expired")
    queue.push(200, "soon")
    dropped: list[str] = []
    assert queue.take(limit=5, now_ns=100, horizon_ns=150, expired=dropped.append) == ["soon", "late"]
    assert dropped == ["expired"]


def test_queries_the_estimate_calls_late_expire_while_others_can_make_it():
    queue: DeadlineQueue[str] = DeadlineQueue(max_entries=10)
    queue.push(120, "hopeless")
    queue.push(200, "on time")
    dropped: list[str] = []
    assert queue.take(limit=5, now_ns=100, horizon_ns=150, expired=dropped.append) == ["on time"]
    assert dropped == ["hopeless"]


def test_when_the_estimate_calls_every_query_late_the_latest_due_are_sent_anyway():
    # One slow batch can push the latency estimate past every deadline; sending nothing would keep the
    # estimate there for good, so the queries that are not yet late go out and their answer corrects it.
    queue: DeadlineQueue[str] = DeadlineQueue(max_entries=10)
    for deadline, name in ((90, "expired"), (110, "a"), (120, "b"), (130, "c")):
        queue.push(deadline, name)
    dropped: list[str] = []
    assert queue.take(limit=2, now_ns=100, horizon_ns=10_000, expired=dropped.append) == ["b", "c"]
    assert dropped == ["expired"]
    assert queue.take(limit=2, now_ns=100, horizon_ns=10_000, expired=dropped.append) == ["a"]
    assert len(queue) == 0


def test_queue_take_respects_limit():
    queue: DeadlineQueue[int] = DeadlineQueue(max_entries=10)
    for i in range(5):
        queue.push(1000 + i, i)
    assert queue.take(limit=2, now_ns=0, horizon_ns=0, expired=lambda _: None) == [0, 1]
    assert len(queue) == 3


def test_queue_refuses_past_its_bound_but_accepts_retries():
    queue: DeadlineQueue[int] = DeadlineQueue(max_entries=2)
    queue.push(1, 1)
    queue.push(2, 2)
    with pytest.raises(Overloaded):
        queue.push(3, 3)
    queue.push_front(0, 0)
    assert len(queue) == 3
