"""The Grafana dashboard in deploy/grafana asks only for series a query frontend exports, so it cannot rot."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clipper.frontends.metrics import QueryMetrics
from clipper.query.answers import SLO_ANSWER

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "clipper-dashboard.json"
PROMETHEUS_OWN = {"up"}  # series Prometheus itself adds to every scraped target
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}


@dataclass(eq=False)
class _Replica:
    model_name: str = "m"
    model_version: str = "1"
    replica_id: int = 0
    last_seen_ns: int = 0


def exported_names() -> set[str]:
    """Every sample name a frontend's /metrics shows once each kind of event has happened."""
    metrics = QueryMetrics(CollectorRegistry(), "f")
    replica = _Replica()
    metrics.replica_joined(replica)
    metrics.request_done("app", 0.01, 2, [SLO_ANSWER])
    metrics.batch_done(replica, 2, 0.005, failed=False)
    metrics.batch_done(replica, 1, 0.005, failed=True)
    metrics.cache_lookup("m", "1", hit=True)
    metrics.rejected("app")
    metrics.stray_answer("m", "1")
    metrics.chosen("app", "m")
    metrics.shadow_compared("app", "m", agreed=True)
    metrics.feedback("app", "m", 1.0)
    metrics.watch_queues(lambda: [("m", "1", 3, 1000)])
    metrics.watch_selection(lambda: [("app", "m", 0.5)])
    text = generate_latest(metrics.registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: identifiers that are not functions, keywords, label
    names in `{...}` or `by (...)`, durations or strings."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*(?!\s*\()\b", expr))
    functions = set(re.findall(r"([A-Za-z_]+)\s*\(", expr))
    return names - functions - KEYWORDS


def test_every_series_the_dashboard_asks_for_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names() | PROMETHEUS_OWN
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"no series found in {target['expr']!r}"
            assert names <= exported, f"panel {panel['title']!r} asks for {names - exported}, not exported"
            used |= names
    # The key series of the issue each have a panel: requests, latency, batches, queues, defaults, cache,
    # and the per-replica ones.
    for wanted in (
        "clipper_app_prediction_latency_seconds_bucket",
        "clipper_app_default_predictions_total",
        "clipper_model_batch_size_sum",
        "clipper_model_queue_length",
        "clipper_cache_lookups_total",
        "clipper_replica_batch_latency_seconds_bucket",
        "clipper_replica_last_heard_seconds",
    ):
        assert wanted in used


def test_the_name_extraction_sees_through_promql() -> None:
    """The check above is only as good as this parser: a misspelt series must be caught."""
    expr = 'histogram_quantile(0.99, sum by (app, le) (rate(clipper_app_x_bucket{result="hit"}[5m]))) / up'
    assert metric_names(expr) == {"clipper_app_x_bucket", "up"}
    assert metric_names("sum(rate(clipper_typo_total[1m]))") - exported_names() == {"clipper_typo_total"}
