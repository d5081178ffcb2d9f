"""GET /admin/cluster_view on a real management frontend over two real query frontends under load."""

from __future__ import annotations

from typing import Any

import pytest

from clipper.frontends.cluster_view import quantile
from tests.conftest import wait_until
from tests.dashboard.conftest import ManagementProcess
from tests.frontends.conftest import QueryCluster


def _view(mgmt: ManagementProcess, **kwargs: Any) -> dict[str, Any]:
    reply = mgmt.get("/admin/cluster_view", **kwargs)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(item for item in items if item["name"] == name)


def test_two_frontends_under_load_then_one_killed(make_cluster, management_process, load):
    first, second = make_cluster(), make_cluster()
    first.model("m")
    first.app("a", model="m")
    first.container("m", "batch_size")
    for frontend in (first, second):  # the replica reaches both (FrontendList), so both answer
        wait_until(lambda f=frontend: f.post("a", {"input": [1.0]}).json()["default"] is False,
                   what="a model answer from each frontend")  # fmt: skip
    mgmt = management_process()
    load([f"{first.url}/a/predict", f"{second.url}/a/predict"])

    def busy(view: dict[str, Any]) -> bool:
        return all(f["requests_per_s"] > 0 for f in view["frontends"]) and len(view["frontends"]) == 2

    wait_until(lambda: busy(_view(mgmt)), what="both frontends listed with a non-zero request rate")
    view = _view(mgmt)
    assert {f["http_address"] for f in view["frontends"]} == {
        u.split("//")[1] for u in (first.url, second.url)
    }
    assert all(f["up"] for f in view["frontends"]) and view["interval_s"] > 0
    app, model = _by_name(view["apps"], "a"), _by_name(view["models"], "m")
    assert app["requests_per_s"] > 0 and app["models"] == ["m"] and app["slo_ms"] == 2000.0
    assert app["p50_ms"] is not None and app["p50_ms"] <= app["p99_ms"]
    assert model["current"] and model["version"] == "1" and model["replicas"] == 1
    assert model["predictions_per_s"] > 0 and model["batches_per_s"] > 0 and model["mean_batch_size"] >= 1
    assert model["p50_ms"] is not None and model["errors_per_s"] == 0
    # The one replica as each frontend sees it (each frontend gives it its own id).
    assert {r["frontend"] for r in model["replica_metrics"]} == {f["id"] for f in view["frontends"]}
    assert sum(r["predictions_per_s"] for r in model["replica_metrics"]) > 0
    # Requests summed over frontends: the app's rate is the frontends' rates added up.
    assert app["requests_per_s"] == pytest.approx(sum(f["requests_per_s"] for f in view["frontends"]))

    second.frontend.kill()  # SIGKILL: its registration stays until the TTL, but it answers no scrape
    second.frontend.wait(10)

    def second_down(view: dict[str, Any]) -> bool:
        listed = {f["http_address"]: f for f in view["frontends"]}
        gone = listed.get(second.url.split("//")[1])
        return gone is not None and gone["up"] is False and gone["requests_per_s"] == 0

    wait_until(lambda: second_down(_view(mgmt)), what="the killed frontend listed with up=false")
    wait_until(lambda: _by_name(_view(mgmt)["apps"], "a")["requests_per_s"] > 0,
               what="the live frontend's rate still reported")  # fmt: skip


def test_cluster_view_needs_the_admin_token_and_scrapes_with_the_query_token(
    make_cluster, management_process, load
):
    tokens = {"CLIPPER_QUERY_TOKEN": "q-secret"}
    frontend: QueryCluster = make_cluster(**tokens)
    mgmt = management_process(CLIPPER_AUTH_TOKEN="a-secret", **tokens)
    assert mgmt.get("/admin/cluster_view").status_code == 401
    assert mgmt.get("/admin/cluster_view", headers={"Authorization": "Bearer q-secret"}).status_code == 401
    auth = {"headers": {"Authorization": "Bearer a-secret"}}
    view = _view(mgmt, **auth)
    assert [f["up"] for f in view["frontends"]] == [True], view["frontends"]  # the query token was sent
    assert frontend.url.endswith(view["frontends"][0]["http_address"])


def test_quantile_interpolates_within_the_bucket_like_histogram_quantile():
    buckets = [(0.001, 0.0), (0.002, 50.0), (0.005, 100.0), (float("inf"), 100.0)]
    assert quantile(buckets, 0.5) == pytest.approx(0.002)
    assert quantile(buckets, 0.25) == pytest.approx(0.0015)
    assert quantile(buckets, 0.99) == pytest.approx(0.002 + 0.003 * 49 / 50)
    assert quantile([(0.1, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert quantile([(0.1, 0.0), (float("inf"), 4.0)], 0.5) == 0.1  # the open top bucket: its lower edge
