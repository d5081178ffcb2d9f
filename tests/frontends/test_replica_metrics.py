"""Per-replica metrics on a query frontend's /metrics: one series per replica, gone when the replica goes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clipper.admin import ClipperConnection
from clipper.admin.deployers.python import deploy_python_closure
from clipper.frontends.metrics import QueryMetrics
from tests.admin.conftest import predict_until, running_cluster
from tests.conftest import wait_until

MODEL = "twin"


def samples(text: str) -> dict[tuple[str, str], float]:
    """(sample name, replica label) -> value of every `clipper_replica_*` sample of MODEL (no buckets)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            mine = s.labels.get("model") == MODEL and "le" not in s.labels
            if s.name.startswith("clipper_replica_") and mine:
                out[(s.name, s.labels["replica"])] = s.value
    return out


def model_predictions(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "clipper_model_predictions_total" and s.labels["model"] == MODEL:
                return s.value
    return 0.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClipperConnection]:
    """A whole local cluster (the `cluster` of tests/frontends/conftest.py is a query frontend alone)."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as conn:
        yield conn


def test_each_replica_has_its_own_series_and_they_go_when_it_goes(cluster: ClipperConnection) -> None:
    cluster.register_application(MODEL, "doubles", "-1", 5_000_000)
    deploy_python_closure(cluster, MODEL, 1, "doubles", lambda xs: [str(len(xs))] * len(xs), num_replicas=2)
    cluster.link_model_to_app(MODEL, MODEL)
    url = f"http://{cluster.get_query_addr()}/{MODEL}/predict"
    metrics_url = f"http://{cluster.get_query_addr()}/metrics"
    predict_until(url, {"input": [0.0]}, lambda a: a.get("default") is False)
    wait_until(
        lambda: len({r for (_, r) in samples(requests.get(metrics_url, timeout=10).text)}) == 2,
        45,
        "both replicas to connect (a series each from registration on)",
    )

    inputs = itertools.count(1)

    def both_answered() -> bool:
        """Concurrent requests keep both replicas busy; new inputs each time (cached ones reach no model)."""
        batch = [float(next(inputs)) for _ in range(64)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda x: requests.post(url, json={"input": [x]}, timeout=10), batch))
        found = samples(requests.get(metrics_url, timeout=10).text)
        answering = [r for (name, r), v in found.items() if name == "clipper_replica_predictions_total" and v]
        return len(answering) == 2

    wait_until(both_answered, 45, "both replicas to answer queries")
    text = requests.get(metrics_url, timeout=10).text
    found = samples(text)
    replicas = {r for (_, r) in found}
    assert len(replicas) == 2, found
    for r in replicas:
        assert found[("clipper_replica_batch_size_count", r)] > 0
        assert found[("clipper_replica_batch_latency_seconds_count", r)] > 0
        assert found[("clipper_replica_failed_batches_total", r)] == 0
        assert 0 <= found[("clipper_replica_last_heard_seconds", r)] < 30
    answered = sum(found[("clipper_replica_predictions_total", r)] for r in replicas)
    assert answered == model_predictions(text)  # the replicas' series add up to the model's

    cluster.set_num_replicas(MODEL, 1, "1")
    wait_until(
        lambda: len({r for (_, r) in samples(requests.get(metrics_url, timeout=10).text)}) == 1,
        30,
        "the stopped replica's series to go",
    )
    left = samples(requests.get(metrics_url, timeout=10).text)
    assert {r for (_, r) in left} < replicas
    assert model_predictions(requests.get(metrics_url, timeout=10).text) >= answered  # the model's stay


@dataclass(eq=False)
class _Replica:
    model_name: str
    model_version: str
    replica_id: int
    last_seen_ns: int = 0


def test_replica_churn_leaves_no_series_behind() -> None:
    """Thousands of replicas come and go: the exposition and the frontend's memory stay the size of the
    replicas connected now."""
    metrics = QueryMetrics(CollectorRegistry(), "test", clock=lambda: 2_000_000_000)
    stays = _Replica(MODEL, "1", 0)
    metrics.replica_joined(stays)
    for i in range(1, 2000):
        r = _Replica(MODEL, "1", i)
        metrics.replica_joined(r)
        metrics.batch_done(r, 4, 0.001, failed=False)
        metrics.replica_left(r, lost_batch=i % 2 == 0)
    metrics.batch_done(stays, 3, 0.001, failed=True)
    text = generate_latest(metrics.registry).decode()
    assert {r for (_, r) in samples(text)} == {"0"}
    assert samples(text)[("clipper_replica_failed_batches_total", "0")] == 1
    assert samples(text)[("clipper_replica_last_heard_seconds", "0")] == 2.0
    failed = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "clipper_model_failed_batches_total"
    ]
    assert failed == [1 + 999]  # the stayer's error and every lost batch count for the model
