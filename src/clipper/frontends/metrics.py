"""Prometheus metrics of a query frontend, in a registry passed in by the composition root.

Names follow Prometheus conventions; the Clipper name each one replaces is in its help text.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from clipper.query.answers import DefaultAnswer

_LATENCY_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ReplicaView(Protocol):
    """What the metrics read of a connected replica (rpc.server.Replica)."""

    @property
    def model_name(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    @property
    def replica_id(self) -> int: ...

    @property
    def last_seen_ns(self) -> int: ...


class QueryMetrics:
    """Implements query.processor.MetricsSink; label children are cached so the hot path does no lookup."""

    def __init__(
        self, registry: CollectorRegistry, frontend_id: str, clock: Callable[[], int] = time.monotonic_ns
    ) -> None:
        """`clock`: the RPC server's, which stamps `last_seen_ns` on every message from a replica."""
        self.registry = registry
        labels = {"frontend": frontend_id}
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
        self._stray = Counter(
            "clipper_rpc_stray_answers",
            "Answers a container sent for a batch it was not given (dropped)",
            ["model", "version"],
            registry=registry,
        )
        self._info = Gauge("clipper_frontend_info", "This frontend's id", ["frontend"], registry=registry)
        self._info.labels(**labels).set(1)
        self._apps: dict[str, AppStats] = {}
        registry.register(_AppCollector(self._apps))
        self._selection = _SelectionCollector()
        registry.register(self._selection)
        self._replicas: dict[ReplicaView, ReplicaStats] = {}
        registry.register(_ReplicaCollector(self._replicas, clock))
        self._models: dict[tuple[str, str], tuple[Histogram, Histogram, Counter]] = {}
        self._cache_children: dict[tuple[str, str, bool], Counter] = {}

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

    def _app(self, app: str) -> AppStats:
        stats = self._apps.get(app)
        if stats is None:
            stats = self._apps[app] = AppStats()
        return stats

    def request_done(
        self, app: str, latency_s: float, n_queries: int, defaults: Sequence[DefaultAnswer]
    ) -> None:
        """One request answered; `defaults` are its default answers (usually none), counted by reason."""
        stats = self._apps.get(app) or self._app(app)
        stats.buckets[bisect_left(_LATENCY_BUCKETS_S, latency_s)] += 1
        stats.latency_sum_s += latency_s
        stats.queries += n_queries
        if defaults:
            by_reason = stats.defaults
            for answer in defaults:
                by_reason[answer.reason] = by_reason.get(answer.reason, 0) + 1

    def batch_done(self, replica: ReplicaView, size: int, latency_s: float, failed: bool) -> None:
        model, version = replica.model_name, replica.model_version
        batch, latency, predictions = self._model(model, version)
        batch.observe(size)
        latency.observe(latency_s)
        if failed:
            self._model_failures.labels(model, version).inc()
        else:
            predictions.inc(size)
        stats = self._replicas.get(replica)
        if stats is not None:
            stats.latency_buckets[bisect_left(_LATENCY_BUCKETS_S, latency_s)] += 1
            stats.latency_sum_s += latency_s
            stats.size_buckets[bisect_left(_BATCH_BUCKETS, size)] += 1
            stats.size_sum += size
            if failed:
                stats.failed += 1
            else:
                stats.answered += size

    def replica_joined(self, replica: ReplicaView) -> None:
        """A replica has its id: its series start (at zero) with the next scrape."""
        self._replicas[replica] = ReplicaStats()

    def replica_left(self, replica: ReplicaView, lost_batch: bool) -> None:
        """A replica is gone: its series go (replicas churn; memory must not), a batch it held counts
        as failed for its model."""
        self._replicas.pop(replica, None)
        if lost_batch:
            self._model_failures.labels(replica.model_name, replica.model_version).inc()

    def cache_lookup(self, model: str, version: str, hit: bool) -> None:
        key = (model, version, hit)
        child = self._cache_children.get(key)
        if child is None:
            child = self._cache_children[key] = self._cache.labels(model, version, "hit" if hit else "miss")
        child.inc()

    def rejected(self, app: str) -> None:
        self._app(app).rejected += 1

    def stray_answer(self, model: str, version: str) -> None:
        self._stray.labels(model, version).inc()

    def chosen(self, app: str, model: str) -> None:
        key = (app, model)
        counts = self._selection.chosen
        counts[key] = counts.get(key, 0) + 1

    def shadow_compared(self, app: str, model: str, agreed: bool) -> None:
        key = (app, model)
        compared, agreements = self._selection.compared, self._selection.agreed
        compared[key] = compared.get(key, 0) + 1
        agreements[key] = agreements.get(key, 0) + agreed

    def feedback(self, app: str, model: str, reward: float) -> None:
        """One feedback turned into a reward for one model (off the query path)."""
        key = (app, model)
        sel = self._selection
        sel.feedbacks[key] = sel.feedbacks.get(key, 0) + 1
        sel.rewards[key] = sel.rewards.get(key, 0.0) + reward

    def watch_selection(self, weights: Callable[[], Iterable[tuple[str, str, float]]]) -> None:
        """Report the policies' current weights (or probabilities) when scraped."""
        self._selection.weights = weights

    def watch_queues(self, lengths: Callable[[], Iterable[tuple[str, str, int, int]]]) -> None:
        """Report queue lengths when scraped, so the query path never touches a gauge."""
        self.registry.register(_QueueCollector(lengths))


class AppStats:
    """Per-app numbers of the query path: plain ints (no lock; the loop's thread is the only writer)."""

    __slots__ = ("buckets", "defaults", "latency_sum_s", "queries", "rejected")

    def __init__(self) -> None:
        self.buckets = [0] * (len(_LATENCY_BUCKETS_S) + 1)
        self.latency_sum_s = 0.0
        self.queries = 0
        self.defaults: dict[str, int] = {}  # by DefaultAnswer.reason
        self.rejected = 0


class ReplicaStats:
    """Per-replica numbers of the batches it answered: plain ints, like AppStats, exported when scraped."""

    __slots__ = ("answered", "failed", "latency_buckets", "latency_sum_s", "size_buckets", "size_sum")

    def __init__(self) -> None:
        self.latency_buckets = [0] * (len(_LATENCY_BUCKETS_S) + 1)
        self.latency_sum_s = 0.0
        self.size_buckets = [0] * (len(_BATCH_BUCKETS) + 1)
        self.size_sum = 0
        self.answered = 0
        self.failed = 0


def _histogram(bounds: tuple[float, ...], buckets: list[int]) -> list[tuple[str, float]]:
    """Prometheus's cumulative `le` buckets from per-bucket counts (the last one is +Inf)."""
    names = [*(str(b) for b in bounds), "+Inf"]
    return list(zip(names, accumulate(buckets), strict=True))


class _ReplicaCollector(Collector):
    """Per replica (`model`, `version`, `replica` = the id this frontend assigned): batches, failures,
    answered queries and seconds since the replica was last heard from (any message, heartbeats too)."""

    def __init__(self, replicas: dict[ReplicaView, ReplicaStats], clock: Callable[[], int]) -> None:
        self._replicas = replicas
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        labels = ["model", "version", "replica"]
        latency = HistogramMetricFamily(
            "clipper_replica_batch_latency_seconds", "Send-to-answer time of its batches", labels=labels
        )
        size = HistogramMetricFamily(
            "clipper_replica_batch_size", "Queries per batch sent to a replica", labels=labels
        )
        answered = CounterMetricFamily(
            "clipper_replica_predictions", "Queries a replica answered", labels=labels
        )
        failed = CounterMetricFamily(
            "clipper_replica_failed_batches", "Batches a replica answered with an error", labels=labels
        )
        silent = GaugeMetricFamily(
            "clipper_replica_last_heard_seconds",
            "Seconds since the replica's last message (answer or heartbeat)",
            labels=labels,
        )
        now = self._clock()
        for replica, stats in list(self._replicas.items()):
            key = [replica.model_name, replica.model_version, str(replica.replica_id)]
            latency_buckets = _histogram(_LATENCY_BUCKETS_S, stats.latency_buckets)
            latency.add_metric(key, latency_buckets, stats.latency_sum_s)
            size.add_metric(key, _histogram(_BATCH_BUCKETS, stats.size_buckets), stats.size_sum)
            answered.add_metric(key, stats.answered)
            failed.add_metric(key, stats.failed)
            silent.add_metric(key, max(0.0, (now - replica.last_seen_ns) / 1e9))
        yield from (latency, size, answered, failed, silent)


class _AppCollector(Collector):
    """Exports AppStats when scraped: the request path pays an increment, not prometheus_client's locks."""

    def __init__(self, apps: dict[str, AppStats]) -> None:
        self._apps = apps

    def collect(self) -> Iterable[Metric]:
        latency = HistogramMetricFamily(
            "clipper_app_prediction_latency_seconds",
            "End-to-end latency of predict requests (Clipper: app:<app>:prediction_latency)",
            labels=["app"],
        )
        queries = CounterMetricFamily(
            "clipper_app_predictions", "Queries answered (Clipper: app:<app>:num_predictions)", labels=["app"]
        )
        defaults = CounterMetricFamily(
            "clipper_app_default_predictions",
            "Queries answered with the default output, by why (slo, no_model, overloaded, model_error, ...)",
            labels=["app", "reason"],
        )
        rejected = CounterMetricFamily(
            "clipper_app_rejected_requests",
            "Requests refused with 503 because a queue was full",
            labels=["app"],
        )
        for app, stats in list(self._apps.items()):
            latency.add_metric([app], _histogram(_LATENCY_BUCKETS_S, stats.buckets), stats.latency_sum_s)
            queries.add_metric([app], stats.queries)
            for reason, count in list(stats.defaults.items()):
                defaults.add_metric([app, reason], count)
            rejected.add_metric([app], stats.rejected)
        yield from (latency, queries, defaults, rejected)


class _QueueCollector(Collector):
    def __init__(self, lengths: Callable[[], Iterable[tuple[str, str, int, int]]]) -> None:
        self._lengths = lengths

    def collect(self) -> Iterable[Metric]:
        labels = ["model", "version"]
        length = GaugeMetricFamily(
            "clipper_model_queue_length", "Queries waiting for a replica", labels=labels
        )
        bound = GaugeMetricFamily(
            "clipper_model_queue_bound", "Most queries the queue holds before answering 503", labels=labels
        )
        for model, version, queued, most in self._lengths():
            length.add_metric([model, version], queued)
            bound.add_metric([model, version], most)
        yield from (length, bound)


class _SelectionCollector(Collector):
    """Per app and model: how often a policy chose it, shadow agreement, feedback, reward, its weight.

    Plain dicts of (app, model) -> number, written on the loop's thread and read when scraped.
    """

    def __init__(self) -> None:
        self.chosen: dict[tuple[str, str], int] = {}
        self.compared: dict[tuple[str, str], int] = {}
        self.agreed: dict[tuple[str, str], int] = {}
        self.feedbacks: dict[tuple[str, str], int] = {}
        self.rewards: dict[tuple[str, str], float] = {}
        self.weights: Callable[[], Iterable[tuple[str, str, float]]] = list

    def collect(self) -> Iterable[Metric]:
        labels = ["app", "model"]
        families: list[tuple[str, str, dict[tuple[str, str], int] | dict[tuple[str, str], float]]] = [
            ("clipper_selection_chosen", "Queries a policy sent to the model", self.chosen),
            ("clipper_selection_shadow_compared", "Shadow answers compared to the primary's", self.compared),
            ("clipper_selection_shadow_agreed", "Shadow answers equal to the primary's", self.agreed),
            ("clipper_selection_feedback", "Feedback turned into a reward for the model", self.feedbacks),
            ("clipper_selection_reward", "Sum of the model's rewards from feedback", self.rewards),
        ]
        for name, doc, values in families:
            family = CounterMetricFamily(name, doc, labels=labels)
            for (app, model), value in list(values.items()):
                family.add_metric([app, model], value)
            yield family
        weight = GaugeMetricFamily(
            "clipper_selection_weight", "The policy's weight (or probability) of the model", labels=labels
        )
        for app, model, value in self.weights():
            weight.add_metric([app, model], value)
        yield weight
