"""Deploys are all or nothing, against a real local cluster: a refused or failed deploy changes nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from clipper.admin import ClipperConnection, ClipperException
from clipper.admin.deployers.python import deploy_python_closure
from tests.admin.conftest import make_manager, predict_until


class _FailsToLoad:
    """Pickles fine; unpickling it (when a replica loads the closure) raises ZeroDivisionError."""

    def __reduce__(self):
        return (eval, ("1/0",))


def _answers(conn: ClipperConnection, app: str, n: int) -> set[object]:
    url = f"http://{conn.get_query_addr()}/{app}/predict"
    with ThreadPoolExecutor(8) as pool:
        replies = pool.map(
            lambda i: requests.post(url, json={"input": [float(i)]}, timeout=30).json(), range(n)
        )
        return {(r["default"], r["output"]) for r in replies}


def test_a_refused_redeploy_changes_neither_files_nor_replicas(cluster: ClipperConnection) -> None:
    cluster.register_application("redeploy", "doubles", "-1", 5_000_000)
    deploy_python_closure(cluster, "redeploy", 1, "doubles", lambda xs: ["1"] * len(xs))
    cluster.link_model_to_app("redeploy", "redeploy")
    url = f"http://{cluster.get_query_addr()}/redeploy/predict"
    predict_until(url, {"input": [0.0]}, lambda a: a.get("default") is False)
    closure = cluster.cm.state_dir / "models" / "redeploy-1" / "func.pkl"  # type: ignore[attr-defined]
    stored = closure.read_bytes()
    with pytest.raises(ClipperException, match="already exists"):
        deploy_python_closure(cluster, "redeploy", 1, "doubles", lambda xs: ["2"] * len(xs), num_replicas=3)
    assert closure.read_bytes() == stored
    assert cluster.get_num_replicas("redeploy", "1") == 1
    assert _answers(cluster, "redeploy", 200) == {(False, 1)}


def test_a_version_whose_replicas_cannot_start_never_becomes_current(cluster: ClipperConnection) -> None:
    cluster.register_application("broken", "doubles", "-1", 5_000_000)
    deploy_python_closure(cluster, "broken", 1, "doubles", lambda xs: ["1"] * len(xs))
    cluster.link_model_to_app("broken", "broken")
    unloadable = _FailsToLoad()
    with pytest.raises(ClipperException, match="version 1 is still current"):
        deploy_python_closure(cluster, "broken", 2, "doubles", lambda xs: [str(unloadable)] * len(xs))
    assert cluster.get_current_model_version("broken") == "1"
    assert "broken:2" not in cluster.get_all_models()
    assert cluster.get_num_replicas("broken", "2") == 0
    url = f"http://{cluster.get_query_addr()}/broken/predict"
    assert predict_until(url, {"input": [0.0]}, lambda a: a.get("default") is False)["output"] == 1
    # The version can be deployed again once fixed: nothing of the failed attempt is left in its way.
    deploy_python_closure(cluster, "broken", 2, "doubles", lambda xs: ["2"] * len(xs))
    assert predict_until(url, {"input": [1.0]}, lambda a: a.get("output") == 2)["output"] == 2


def test_clipper_0_4_opening_idiom_connects_to_a_running_cluster(cluster: ClipperConnection) -> None:
    """`try: start_clipper() except ClipperException: connect()`, the usual opening of a Clipper script."""
    cluster.register_application("idiom", "doubles", "-1", 100_000)
    manager = cluster.cm
    again = ClipperConnection(
        make_manager(manager.state_dir, manager.cluster_name)  # type: ignore[attr-defined]
    )
    try:
        again.start_clipper()
    except ClipperException:
        again.connect()
    assert "idiom" in again.get_all_apps()


def test_stopping_the_current_version_makes_a_remaining_one_current(cluster: ClipperConnection) -> None:
    """Clipper's tests stop a current version while another stays; the other then serves (Clipper left the
    model pointing at the deleted version)."""
    cluster.register_application("current", "doubles", "-1", 5_000_000)
    deploy_python_closure(cluster, "current", 1, "doubles", lambda xs: ["1"] * len(xs))
    deploy_python_closure(cluster, "current", 2, "doubles", lambda xs: ["2"] * len(xs))
    cluster.link_model_to_app("current", "current")
    cluster.stop_versioned_models({"current": ["2"]})
    assert cluster.get_num_replicas("current", "2") == 0
    assert cluster.get_current_model_version("current") == "1"
    url = f"http://{cluster.get_query_addr()}/current/predict"
    assert predict_until(url, {"input": [0.0]}, lambda a: a.get("default") is False)["output"] == 1
    cluster.stop_models(["current"])  # every version, the current one last
    assert [m for m in cluster.get_all_models() if m.startswith("current:")] == []
    assert cluster.get_num_replicas("current", "1") == cluster.get_num_replicas("current", "2") == 0
