"""Per-model-version deadline queue and adaptive batch sizing.

Replicas pull a batch when they are free. The batch limit adapts with AIMD as the Clipper paper describes:
+1 after a full batch whose queries all finished before their deadlines, a 10% cut after one that did
not. Nothing is padded with copies of queries (Clipper's code did, reference §6.3).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

from clipper.errors import Overloaded

T = TypeVar("T")

AIMD_DECREASE_FACTOR = 0.9


class AimdBatchSizer:
    """Batch-size limit: additive increase while batches meet their deadlines, multiplicative decrease."""

    def __init__(self, max_size: int, fixed: bool = False) -> None:
        self.max_size = max_size
        self.fixed = fixed
        self.limit = max_size if fixed else 1

    def observe(self, batch_size: int, met_deadline: bool) -> None:
        """Update the limit after a batch came back."""
        if self.fixed:
            return
        if not met_deadline:
            self.limit = max(1, int(self.limit * AIMD_DECREASE_FACTOR))
        elif batch_size >= self.limit:
            self.limit = min(self.max_size, self.limit + 1)


class DeadlineQueue(Generic[T]):
    """Bounded priority queue of items by deadline (ns); expired items are handed to a callback, not sent."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._heap: list[tuple[int, int, T]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, deadline_ns: int, item: T) -> None:
        """Add an item; raise Overloaded when the queue is full."""
        if len(self._heap) >= self.max_entries:
            raise Overloaded(f"queue full ({self.max_entries} queries waiting)")
        heapq.heappush(self._heap, (deadline_ns, next(self._seq), item))

    def push_front(self, deadline_ns: int, item: T) -> None:
        """Re-queue an item that was already accepted (a retry): never refused for size."""
        heapq.heappush(self._heap, (deadline_ns, -next(self._seq), item))

    def take(self, limit: int, now_ns: int, horizon_ns: int, expired: Callable[[T], None]) -> list[T]:
        """Up to `limit` items with the earliest deadlines after `horizon_ns`; those before it expire.

        `horizon_ns` is `now_ns` plus the expected latency: an item due before it would probably be late.
        When no item is due after the horizon, the latest-due items that are not yet late (due after
        `now_ns`) are taken anyway: an idle replica never waits while queries could still be answered, and
        the answer corrects an expected latency that one slow batch made too high.
        """
        heap = self._heap
        out: list[T] = []
        hopeless: list[tuple[int, int, T]] = []
        while heap and len(out) < limit:
            entry = heapq.heappop(heap)
            deadline = entry[0]
            if deadline <= now_ns:
                expired(entry[2])
            elif deadline <= horizon_ns:
                hopeless.append(entry)
            else:
                out.append(entry[2])
        if out:
            for entry in hopeless:
                expired(entry[2])
            return out
        for entry in hopeless[:-limit]:
            heapq.heappush(heap, entry)
        return [entry[2] for entry in hopeless[-limit:]]

    def drain(self) -> list[T]:
        """Remove and return everything (shutdown, version gone)."""
        items = [item for _, _, item in self._heap]
        self._heap.clear()
        return items
