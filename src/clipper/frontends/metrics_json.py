"""The query frontend's metrics in Clipper's JSON shape (reference §2.8, §8), for Clipper clients.

Clipper's `/metrics` answered `{"counters": [...], "ratio_counters": [...], "meters": [...], "histograms":
[...]}` with every value a string; `ClipperConnection.inspect_instance()` returns that as a dict. We read the
same numbers the Prometheus text is made of, so the two views never disagree. What Clipper measured and we
do not is derived: histogram percentiles, min, max and spread come from the buckets, and a meter's rates are
the mean rate since the frontend started (we keep no moving averages; Prometheus computes those).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry

# Prometheus family -> Clipper's metric name, filled from the family's labels
_COUNTERS = {
    "clipper_app_predictions": "app:{app}:num_predictions",
    "clipper_model_predictions": "model:{model}:{version}:num_predictions",
}
_HISTOGRAMS = {
    "clipper_app_prediction_latency_seconds": ("app:{app}:prediction_latency", "microseconds", 1e6),
    "clipper_model_batch_latency_seconds": (
        "model:{model}:{version}:prediction_latency",
        "microseconds",
        1e6,
    ),
    "clipper_model_batch_size": ("model:{model}:{version}:batch_size", "queries", 1.0),
}
_THROUGHPUT = {
    "clipper_app_predictions": "app:{app}:prediction_throughput",
    "clipper_model_predictions": "model:{model}:{version}:prediction_throughput",
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def clipper_metrics(registry: CollectorRegistry, uptime_s: float) -> dict[str, list[dict[str, Any]]]:
    """The registry's metrics as Clipper's `/metrics` JSON; empty categories are left out, as Clipper did."""
    samples: Samples = {}
    for family in registry.collect():
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    out: dict[str, list[dict[str, Any]]] = {
        "counters": _counters(samples),
        "ratio_counters": _ratios(samples),
        "meters": _meters(samples, uptime_s),
        "histograms": _histograms(samples),
    }
    return {k: v for k, v in out.items() if v}


def _num(x: float) -> str:
    """Clipper's values are strings; integers without a fraction, `nan` for 0/0."""
    if math.isnan(x):
        return "nan"
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _series(samples: Samples, name: str) -> Iterable[tuple[dict[str, str], float]]:
    for (sample, labels), value in samples.items():
        if sample == name:
            yield dict(labels), value


def _counters(samples: Samples) -> list[dict[str, Any]]:
    found = [
        {pattern.format(**labels): {"count": _num(v)}}
        for family, pattern in _COUNTERS.items()
        for labels, v in _series(samples, f"{family}_total")
    ]
    total = sum(v for _, v in _series(samples, "clipper_model_predictions_total"))
    lookups = sum(v for _, v in _series(samples, "clipper_cache_lookups_total"))
    found.append({"internal:aggregate_num_predictions": {"count": _num(total)}})
    found.append({"internal:prediction_cache_lookups": {"count": _num(lookups)}})
    return found


def _ratio(part: float, whole: float) -> dict[str, str]:
    return {"ratio": _num(part / whole if whole else math.nan)}


def _ratios(samples: Samples) -> list[dict[str, Any]]:
    found = []
    defaults: dict[str, float] = defaultdict(float)  # summed over reasons
    for lb, v in _series(samples, "clipper_app_default_predictions_total"):
        defaults[lb["app"]] += v
    for labels, queries in _series(samples, "clipper_app_predictions_total"):
        app = labels["app"]
        found.append({f"app:{app}:default_prediction_ratio": _ratio(defaults.get(app, 0.0), queries)})
    cache: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for labels, v in _series(samples, "clipper_cache_lookups_total"):
        cache[(labels["model"], labels["version"])][labels["result"]] = v
    for (model, version), counts in sorted(cache.items()):
        hits = counts.get("hit", 0.0)
        found.append(
            {f"model:{model}:{version}:cache_hit_ratio": _ratio(hits, hits + counts.get("miss", 0.0))}
        )
    hits = sum(c.get("hit", 0.0) for c in cache.values())
    lookups = sum(sum(c.values()) for c in cache.values())
    found.append({"internal:prediction_cache_hit_ratio": _ratio(hits, lookups)})
    return found


def _meter(count: float, uptime_s: float) -> dict[str, str]:
    rate = _num(count / uptime_s if uptime_s > 0 else 0.0)
    return {
        "unit": "events per second",
        "rate": rate,
        "rate_1min": rate,
        "rate_5min": rate,
        "rate_15min": rate,
    }


def _meters(samples: Samples, uptime_s: float) -> list[dict[str, Any]]:
    found = [
        {pattern.format(**labels): _meter(v, uptime_s)}
        for family, pattern in _THROUGHPUT.items()
        for labels, v in _series(samples, f"{family}_total")
    ]
    total = sum(v for _, v in _series(samples, "clipper_model_predictions_total"))
    found.append({"internal:aggregate_model_throughput": _meter(total, uptime_s)})
    return found


def _histograms(samples: Samples) -> list[dict[str, Any]]:
    found = []
    for family, (pattern, unit, scale) in _HISTOGRAMS.items():
        buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = defaultdict(list)
        for (sample, labels), v in samples.items():
            if sample == f"{family}_bucket":
                rest = tuple(kv for kv in labels if kv[0] != "le")
                le = dict(labels)["le"]
                buckets[rest].append((float(le) * scale if le != "+Inf" else math.inf, v))
        for rest, cumulative in buckets.items():
            total = samples.get((f"{family}_sum", rest), 0.0) * scale
            found.append({pattern.format(**dict(rest)): _summary(sorted(cumulative), total, unit)})
    return found


def _summary(cumulative: list[tuple[float, float]], total: float, unit: str) -> dict[str, str]:
    """Clipper's histogram fields from cumulative buckets `(upper bound, count)` and the exact sum."""
    size = cumulative[-1][1] if cumulative else 0.0
    if size == 0:
        zero = "0"
        return {"unit": unit, "size": zero, "min": zero, "max": zero, "mean": zero, "std_dev": zero,
                "p50": zero, "p95": zero, "p99": zero}  # fmt: skip
    bounds, counts, lower, prev = [], [], 0.0, 0.0
    for upper, c in cumulative:
        top = upper if math.isfinite(upper) else max(lower, total / size) * 2
        if c > prev:
            bounds.append((lower, top))
            counts.append(c - prev)
        lower, prev = top, c
    mean = total / size
    mids = [(lo + hi) / 2 for lo, hi in bounds]
    var = sum(n * (m - mean) ** 2 for n, m in zip(counts, mids, strict=True)) / size

    def quantile(q: float) -> float:
        rank, seen = q * size, 0.0
        for (lo, hi), n in zip(bounds, counts, strict=True):
            if seen + n >= rank:
                return lo + (hi - lo) * (rank - seen) / n
            seen += n
        return bounds[-1][1]

    return {
        "unit": unit, "size": _num(size), "min": _num(bounds[0][0]), "max": _num(bounds[-1][1]),
        "mean": _num(mean), "std_dev": _num(math.sqrt(var)),
        "p50": _num(quantile(0.5)), "p95": _num(quantile(0.95)), "p99": _num(quantile(0.99)),
    }  # fmt: skip
