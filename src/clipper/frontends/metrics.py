"""Prometheus metrics of a query frontend, in a registry passed in by the composition root.

Names follow Prometheus conventions; the Clipper name each one replaces is in its help text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class QueryMetrics:
    """Implements query.processor.MetricsSink; label children are cached so the hot path does no lookup."""

    def __init__(self, registry: CollectorRegistry, frontend_id: str) -> None:
        self.registry = registry
        labels = {"frontend": frontend_id}
        self._app_latency = Histogram(
            "clipper_app_prediction_latency_seconds",
            "End-to-end latency of predict requests (Clipper: app:<app>:prediction_latency)",
            ["app"], buckets=_LATENCY_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self._app_predictions = Counter(
            "clipper_app_predictions", "Queries answered (Clipper: app:<app>:num_predictions)", ["app"],
            registry=registry,
        )  # fmt: skip
        self._app_defaults = Counter(
            "clipper_app_default_predictions", "Queries answered with the default output", ["app"],
            registry=registry,
        )  # fmt: skip
        self._rejected = Counter(
            "clipper_app_rejected_requests", "Requests refused with 503 because a queue was full", ["app"],
            registry=registry,
        )  # fmt: skip
        self._batch_size = Histogram(
            "clipper_model_batch_size", "Queries per batch sent (Clipper: model:<m>:<v>:batch_size)",
            ["model", "version"], buckets=_BATCH_BUCKETS, registry=registry,
        )  # fmt: skip
        self._model_latency = Histogram(
            "clipper_model_batch_latency_seconds",
            "Send-to-answer time of a batch (Clipper: model:<m>:<v>:prediction_latency)",
            ["model", "version"], buckets=_LATENCY_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self._model_predictions = Counter(
            "clipper_model_predictions", "Queries a model answered (Clipper: model:<m>:<v>:num_predictions)",
            ["model", "version"], registry=registry,
        )  # fmt: skip
        self._model_failures = Counter(
            "clipper_model_failed_batches",
            "Batches a model failed or lost",
            ["model", "version"],
            registry=registry,
        )
        self._cache = Counter(
            "clipper_cache_lookups", "Prediction cache lookups (Clipper: internal:prediction_cache_lookups)",
            ["model", "version", "result"], registry=registry,
        )  # fmt: skip
        self._info = Gauge("clipper_frontend_info", "This frontend's id", ["frontend"], registry=registry)
        self._info.labels(**labels).set(1)
        self._apps: dict[str, tuple[Histogram, Counter, Counter]] = {}
        self._models: dict[tuple[str, str], tuple[Histogram, Histogram, Counter]] = {}
        self._cache_children: dict[tuple[str, str, bool], Counter] = {}

    def _app(self, app: str) -> tuple[Histogram, Counter, Counter]:
        found = self._apps.get(app)
        if found is None:
            found = self._apps[app] = (
                self._app_latency.labels(app),
                self._app_predictions.labels(app),
                self._app_defaults.labels(app),
            )
        return found

    def _model(self, model: str, version: str) -> tuple[Histogram, Histogram, Counter]:
        key = (model, version)
        found = self._models.get(key)
        if found is None:
            found = self._models[key] = (
                self._batch_size.labels(model, version),
                self._model_latency.labels(model, version),
                self._model_predictions.labels(model, version),
            )
        return found

    def request_done(self, app: str, latency_s: float, n_queries: int, n_default: int) -> None:
        latency, predictions, defaults = self._app(app)
        latency.observe(latency_s)
        predictions.inc(n_queries)
        if n_default:
            defaults.inc(n_default)

    def batch_done(self, model: str, version: str, size: int, latency_s: float, failed: bool) -> None:
        batch, latency, predictions = self._model(model, version)
        batch.observe(size)
        latency.observe(latency_s)
        if failed:
            self._model_failures.labels(model, version).inc()
        else:
            predictions.inc(size)

    def cache_lookup(self, model: str, version: str, hit: bool) -> None:
        key = (model, version, hit)
        child = self._cache_children.get(key)
        if child is None:
            child = self._cache_children[key] = self._cache.labels(model, version, "hit" if hit else "miss")
        child.inc()

    def rejected(self, app: str) -> None:
        self._rejected.labels(app).inc()

    def watch_queues(self, lengths: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        """Report queue lengths when scraped, so the query path never touches a gauge."""
        self.registry.register(_QueueCollector(lengths))


class _QueueCollector(Collector):
    def __init__(self, lengths: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        self._lengths = lengths

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "clipper_model_queue_length", "Queries waiting for a replica", labels=["model", "version"]
        )
        for model, version, length in self._lengths():
            family.add_metric([model, version], length)
        yield family
