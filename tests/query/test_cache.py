"""The bounded prediction cache."""

from clipper.query.cache import PredictionCache


def test_hit_and_miss_are_counted():
    cache = PredictionCache(capacity_bytes=10_000)
    key = ("m", "1", b"\x00\x01")
    assert cache.get(key) is None
    cache.put(key, b"3.0")
    assert cache.get(key) == b"3.0"
    assert (cache.hits, cache.misses) == (1, 1)


def test_least_recently_used_is_evicted_first_and_size_stays_bounded():
    cache = PredictionCache(capacity_bytes=3 * (96 + 2 + 1))
    for i in range(3):
        cache.put(("m", "1", bytes([i, i])), b"x")
    cache.get(("m", "1", b"\x00\x00"))  # touch the oldest
    cache.put(("m", "1", b"\x09\x09"), b"y")
    assert cache.get(("m", "1", b"\x01\x01")) is None
    assert cache.get(("m", "1", b"\x00\x00")) == b"x"
    assert cache.size_bytes <= cache.capacity_bytes


def test_an_output_larger_than_the_cache_is_not_stored():
    cache = PredictionCache(capacity_bytes=100)
    cache.put(("m", "1", b"k"), b"x" * 200)
    assert len(cache) == 0


def test_invalidate_forgets_one_version_only():
    cache = PredictionCache(capacity_bytes=10_000)
    cache.put(("m", "1", b"a"), b"1")
    cache.put(("m", "2", b"a"), b"2")
    cache.invalidate("m", "1")
    assert cache.get(("m", "1", b"a")) is None
    assert cache.get(("m", "2", b"a")) == b"2"


def test_zero_capacity_disables():
    assert not PredictionCache(0).enabled
