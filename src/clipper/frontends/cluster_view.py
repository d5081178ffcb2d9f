"""`GET /admin/cluster_view`: the store's records joined with live numbers from every query frontend.

The management frontend scrapes each registered frontend's /metrics (at most once per `min_interval_s`,
whoever asks), keeps the previous scrape of each, and turns the two into rates and latency quantiles
summed over frontends. A frontend that does not answer is listed with `up: false`; the view never fails
for it. The dashboard and `clipper top` read this one endpoint, so they agree on every number.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

from clipper.cluster_view_schema import (
    AppView,
    ClusterViewReply,
    FrontendView,
    ModelView,
    ReplicaMetricsView,
)
from clipper.config.store import ConfigStore
from clipper.schema import App, Container, Frontend, Model

Labels = dict[str, str]
Samples = dict[str, list[tuple[Labels, float]]]  # sample name -> every (labels, value) with that name


def parse_samples(text: str) -> Samples:
    """The Prometheus text format as sample name -> [(labels, value)], `_total`/`_bucket` names kept."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


@dataclass(frozen=True, slots=True)
class Scrape:
    """One frontend's /metrics at one moment (monotonic seconds)."""

    at_s: float
    samples: Samples


def _matching(samples: Samples, name: str, match: Labels) -> Iterable[tuple[Labels, float]]:
    for labels, value in samples.get(name, ()):
        if all(labels.get(k) == v for k, v in match.items()):
            yield labels, value


def _keyed(samples: Samples, name: str, match: Labels) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(labels.items())): value for labels, value in _matching(samples, name, match)}


class Window:
    """The last two scrapes of every frontend that answered: counters become deltas and rates.

    A frontend seen once so far adds nothing to rates (no interval yet) but its gauges count.
    A counter that went down (the frontend restarted under the same id) counts from zero.
    """

    def __init__(self, pairs: dict[str, tuple[Scrape | None, Scrape]]) -> None:
        self._pairs = pairs

    @property
    def interval_s(self) -> float | None:
        """Mean time between the two scrapes rates are computed over; None before a second scrape."""
        gaps = [cur.at_s - prev.at_s for prev, cur in self._pairs.values() if prev is not None]
        return sum(gaps) / len(gaps) if gaps else None

    def _deltas(
        self, name: str, match: Labels, frontend: str | None = None
    ) -> Iterable[tuple[Labels, float, float]]:
        """(labels, increase, seconds) per series and frontend with two scrapes."""
        for fid, (prev, cur) in self._pairs.items():
            if prev is None or (frontend is not None and fid != frontend) or cur.at_s <= prev.at_s:
                continue
            before = _keyed(prev.samples, name, match)
            for key, value in _keyed(cur.samples, name, match).items():
                old = before.get(key, 0.0)
                yield dict(key), (value - old if value >= old else value), cur.at_s - prev.at_s

    def rate(self, name: str, match: Labels, frontend: str | None = None) -> float:
        """Per-second increase of a counter, summed over series and frontends."""
        return sum(delta / seconds for _, delta, seconds in self._deltas(name, match, frontend))

    def increase(self, name: str, match: Labels, frontend: str | None = None) -> float:
        return sum(delta for _, delta, _ in self._deltas(name, match, frontend))

    def rates_by(self, name: str, match: Labels, label: str, missing: str) -> dict[str, float]:
        """Rates grouped by one label's value (`missing` where the series lacks it)."""
        out: dict[str, float] = {}
        for labels, delta, seconds in self._deltas(name, match):
            key = labels.get(label, missing)
            out[key] = out.get(key, 0.0) + delta / seconds
        return out

    def quantile_ms(
        self, histogram: str, match: Labels, q: float, frontend: str | None = None
    ) -> float | None:
        """The q-quantile of a seconds histogram over the window, from its bucket increases, in ms."""
        buckets: dict[float, float] = {}
        for labels, delta, _ in self._deltas(f"{histogram}_bucket", match, frontend):
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + delta
        value = quantile(sorted(buckets.items()), q)
        return None if value is None else value * 1000

    def gauge(self, name: str, match: Labels, frontend: str | None = None) -> float | None:
        """A gauge's current value summed over frontends; None when no frontend exports it."""
        values = [v for fid, (_, cur) in self._pairs.items() if frontend in (None, fid)
                  for _, v in _matching(cur.samples, name, match)]  # fmt: skip
        return sum(values) if values else None

    def series(self, name: str, match: Labels) -> list[tuple[str, Labels]]:
        """(frontend id, labels) of every series of `name` in the latest scrapes."""
        return [(fid, labels) for fid, (_, cur) in sorted(self._pairs.items())
                for labels, _ in _matching(cur.samples, name, match)]  # fmt: skip


def quantile(cumulative: list[tuple[float, float]], q: float) -> float | None:
    """Like PromQL's histogram_quantile: linear within the bucket that holds rank q; None if empty."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower  # the open top bucket: its lower edge is all that is known
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


class ClusterView:
    """Scrapes the live query frontends and builds the view; one per management frontend process."""

    def __init__(
        self,
        store: ConfigStore,
        query_token: str | None = None,
        *,
        min_interval_s: float = 1.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._headers = {"Authorization": f"Bearer {query_token}"} if query_token else {}
        self._min_interval_s = min_interval_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._last_round_s: float | None = None
        self._scrapes: dict[str, tuple[Scrape | None, Scrape]] = {}
        self._errors: dict[str, str] = {}

    async def view(self) -> ClusterViewReply:
        frontends = sorted(await self._store.list_frontends(), key=lambda f: f.frontend_id)
        async with self._lock:  # callers arriving together share one scrape round
            now = self._clock()
            if self._last_round_s is None or now - self._last_round_s >= self._min_interval_s:
                await self._scrape_all(frontends)
                self._last_round_s = now
            answered = [f.frontend_id for f in frontends if f.frontend_id not in self._errors]
            window = Window({fid: self._scrapes[fid] for fid in answered if fid in self._scrapes})
            errors = dict(self._errors)
        links = {name: await self._store.get_links(name) for name in await self._store.list_app_names()}
        return ClusterViewReply(
            time_s=time.time(),  # noqa: TID251 wall clock, for people reading the view
            interval_s=window.interval_s,
            frontends=[_frontend_view(f, window, errors.get(f.frontend_id)) for f in frontends],
            apps=await self._apps(links, window),
            models=await self._models(links, window),
        )

    async def _scrape_all(self, frontends: list[Frontend]) -> None:
        results = await asyncio.gather(*(asyncio.to_thread(self._scrape, f) for f in frontends))
        live = {f.frontend_id for f in frontends}
        self._scrapes = {k: v for k, v in self._scrapes.items() if k in live}  # departed ones are forgotten
        self._errors = {}
        for frontend, result in zip(frontends, results, strict=True):
            if isinstance(result, str):
                self._errors[frontend.frontend_id] = result
                continue
            previous = self._scrapes.get(frontend.frontend_id)
            self._scrapes[frontend.frontend_id] = (previous[1] if previous else None, result)

    def _scrape(self, frontend: Frontend) -> Scrape | str:
        """One frontend's metrics, or why they could not be read (blocking: runs in a thread)."""
        url = f"http://{frontend.scrape_address}/metrics"
        try:
            reply = requests.get(url, headers=self._headers, timeout=self._timeout_s)
        except requests.RequestException as e:
            return f"{url}: {type(e).__name__}"
        if reply.status_code != 200:
            return f"{url}: HTTP {reply.status_code}"
        try:
            return Scrape(self._clock(), parse_samples(reply.text))
        except ValueError as e:
            return f"{url}: unreadable metrics ({e})"

    async def _apps(self, links: dict[str, list[str]], window: Window) -> list[AppView]:
        """`links`: app name -> its linked models, as read once for the whole view."""
        apps = []
        for name, models in links.items():
            app = await self._store.get_app(name)
            if app is not None:
                apps.append(_app_view(app, models, window))
        return apps

    async def _models(self, links: dict[str, list[str]], window: Window) -> list[ModelView]:
        containers = await self._store.list_containers()
        models = sorted(await self._store.list_models(), key=lambda m: (m.model_name, m.model_version))
        current = {
            name: await self._store.get_current_version(name) for name in {m.model_name for m in models}
        }
        linked_apps: dict[str, list[str]] = {}
        for app, app_models in links.items():
            for model in app_models:
                linked_apps.setdefault(model, []).append(app)
        return [
            _model_view(m, current[m.model_name] == m.model_version, containers, linked_apps, window)
            for m in models
        ]


def _frontend_view(frontend: Frontend, window: Window, error: str | None) -> FrontendView:
    up = error is None
    rate = (
        window.rate("clipper_app_prediction_latency_seconds_count", {}, frontend.frontend_id) if up else 0.0
    )
    return FrontendView(
        id=frontend.frontend_id, http_address=frontend.http_address, up=up, requests_per_s=rate, error=error
    )


def _hit_ratio(window: Window, matches: list[Labels]) -> float | None:
    """Cache hits over lookups in the window, summed over the series each of `matches` selects."""
    hits = sum(window.increase("clipper_cache_lookups_total", m | {"result": "hit"}) for m in matches)
    total = sum(window.increase("clipper_cache_lookups_total", m) for m in matches)
    return hits / total if total > 0 else None


def _app_view(app: App, models: list[str], window: Window) -> AppView:
    match = {"app": app.name}
    latency = "clipper_app_prediction_latency_seconds"
    return AppView(
        name=app.name,
        input_type=app.input_type,
        slo_ms=app.latency_slo_micros / 1000,
        policy=app.policy,
        models=models,
        requests_per_s=window.rate(f"{latency}_count", match),
        queries_per_s=window.rate("clipper_app_predictions_total", match),
        rejected_per_s=window.rate("clipper_app_rejected_requests_total", match),
        p50_ms=window.quantile_ms(latency, match, 0.5),
        p99_ms=window.quantile_ms(latency, match, 0.99),
        defaults_per_s=window.rates_by("clipper_app_default_predictions_total", match, "reason", "default"),
        cache_hit_ratio=_hit_ratio(window, [{"model": m} for m in models]),
    )


def _model_view(
    model: Model, current: bool, containers: list[Container], links: dict[str, list[str]], window: Window
) -> ModelView:
    match = {"model": model.model_name, "version": model.model_version}
    per_frontend: dict[str, int] = {}  # every replica registers once with each frontend it reaches
    for c in containers:
        if (c.model_name, c.model_version) == (model.model_name, model.model_version):
            per_frontend[c.frontend_id] = per_frontend.get(c.frontend_id, 0) + 1
    batches = window.increase("clipper_model_batch_size_count", match)
    bound = window.gauge("clipper_model_queue_bound", match)
    return ModelView(
        name=model.model_name,
        version=model.model_version,
        current=current,
        input_type=model.input_type,
        replicas=max(per_frontend.values(), default=0),
        predictions_per_s=window.rate("clipper_model_predictions_total", match),
        batches_per_s=window.rate("clipper_model_batch_size_count", match),
        mean_batch_size=window.increase("clipper_model_batch_size_sum", match) / batches if batches else None,
        p50_ms=window.quantile_ms("clipper_model_batch_latency_seconds", match, 0.5),
        p99_ms=window.quantile_ms("clipper_model_batch_latency_seconds", match, 0.99),
        queue_length=int(window.gauge("clipper_model_queue_length", match) or 0),
        queue_bound=None if bound is None else int(bound),
        errors_per_s=window.rate("clipper_model_failed_batches_total", match),
        cache_hit_ratio=_hit_ratio(window, [match]),
        linked_apps=links.get(model.model_name, []),
        replica_metrics=_replica_metrics(window, match),
    )


def _replica_metrics(window: Window, match: Labels) -> list[ReplicaMetricsView]:
    """Per-replica series the frontends export (`clipper_replica_*`), one row per frontend and replica."""
    rows = []
    for fid, labels in window.series("clipper_replica_last_heard_seconds", match):
        one = match | {"replica": labels["replica"]}
        batches = window.increase("clipper_replica_batch_size_count", one, fid)
        size_sum = window.increase("clipper_replica_batch_size_sum", one, fid)
        rows.append(ReplicaMetricsView(
            frontend=fid,
            replica=labels["replica"],
            predictions_per_s=window.rate("clipper_replica_predictions_total", one, fid),
            batches_per_s=window.rate("clipper_replica_batch_size_count", one, fid),
            mean_batch_size=size_sum / batches if batches else None,
            p50_ms=window.quantile_ms("clipper_replica_batch_latency_seconds", one, 0.5, fid),
            p99_ms=window.quantile_ms("clipper_replica_batch_latency_seconds", one, 0.99, fid),
            failed_batches_per_s=window.rate("clipper_replica_failed_batches_total", one, fid),
            last_heard_s=window.gauge("clipper_replica_last_heard_seconds", one, fid),
        ))  # fmt: skip
    return rows
