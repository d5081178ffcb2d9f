"""Bounded prediction cache keyed by (model, version, input bytes), least-recently-used eviction.

The key holds the whole input, not a hash of it, so a collision can never return another input's output
(Clipper stored only a 64-bit hash, §6.5). Size counts keys and outputs, so the bound is real memory.
"""

from __future__ import annotations

from collections import OrderedDict

CacheKey = tuple[str, str, bytes]
_ENTRY_OVERHEAD_BYTES = 96


class PredictionCache:
    """LRU over completed outputs, bounded in bytes; capacity 0 turns it off."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[CacheKey, bytes] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> bytes | None:
        """The cached output, marking it recently used; counts a hit or a miss."""
        out = self._entries.get(key)
        if out is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return out

    def put(self, key: CacheKey, output: bytes) -> None:
        """Store an output, evicting the least recently used until it fits; skip what can never fit."""
        size = _size(key, output)
        if size > self.capacity_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.size_bytes -= _size(key, old)
        self._entries[key] = output
        self.size_bytes += size
        while self.size_bytes > self.capacity_bytes:
            k, v = self._entries.popitem(last=False)
            self.size_bytes -= _size(k, v)

    def invalidate(self, model_name: str, model_version: str) -> None:
        """Forget every output of one model version (redeployed or deleted)."""
        for key in [k for k in self._entries if k[0] == model_name and k[1] == model_version]:
            self.size_bytes -= _size(key, self._entries.pop(key))


def _size(key: CacheKey, output: bytes) -> int:
    return len(key[2]) + len(output) + _ENTRY_OVERHEAD_BYTES
