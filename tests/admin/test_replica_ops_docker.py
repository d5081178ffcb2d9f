"""Replica management through the management frontend's container on a real Docker engine: given the
engine's socket (`mount_docker_socket=True`), it scales a model version by the cluster's own manager."""

from __future__ import annotations

import uuid

import pytest
import requests

from clipper.admin.connection import ClipperConnection
from tests.admin.conftest import DockerManagers
from tests.conftest import ping_status, wait_until

pytestmark = pytest.mark.docker


@pytest.fixture
def cluster(make_docker_manager: DockerManagers, runtime_image: str) -> ClipperConnection:
    manager = make_docker_manager(mount_docker_socket=True)
    manager.start_clipper(runtime_image, runtime_image, runtime_image, 1024, 1, 5, 300)
    conn = ClipperConnection(manager)
    conn.connect()
    # start_clipper waits for the query frontends only; the management frontend may still be importing.
    url = f"http://{manager.get_admin_addr()}"
    wait_until(lambda: ping_status(url) == 200, 60, "the management API")
    return conn


def test_scale_1_to_2_through_the_management_container(cluster: ClipperConnection) -> None:
    cluster.deploy_model("m", "1", "doubles", "clipper/noop-container:0.4.1")
    assert cluster.get_num_replicas("m", "1") == 1
    base = f"http://{cluster.cm.get_admin_addr()}/admin"
    auth = {"Authorization": f"Bearer {cluster.cm.get_admin_token()}"}
    body = {"model_name": "m", "model_version": "1", "num_replicas": 2}
    r = requests.post(f"{base}/set_num_replicas", json=body, headers=auth, timeout=90)
    assert r.status_code == 200, r.text
    assert cluster.get_num_replicas("m", "1") == 2
    cluster.wait_for_model("m", "1", num_replicas=2, timeout_s=60)  # the new one joined the frontend
    listed = requests.get(
        f"{base}/get_replicas", params={"model_name": "m", "model_version": "1"}, headers=auth, timeout=30
    ).json()
    assert len(listed) == 2 and all(r["kind"] == "container" and r["state"] == "running" for r in listed)
    assert all(r["uptime_s"] is not None and r["uptime_s"] >= 0 for r in listed)


def test_the_cluster_view_reads_the_frontends_from_the_management_container(
    cluster: ClipperConnection,
) -> None:
    """The dashboard's data on Docker: the management container scrapes each query frontend on its own
    metrics port and sees the app's traffic."""
    cluster.register_application("docker-view", "doubles", "-1", 1_000_000)
    cluster.deploy_model("m", "1", "doubles", "clipper/noop-container:0.4.1")
    cluster.link_model_to_app("docker-view", "m")
    url = f"http://{cluster.get_query_addr()}/docker-view/predict"
    view_url = f"http://{cluster.cm.get_admin_addr()}/admin/cluster_view"
    auth = {"Authorization": f"Bearer {cluster.cm.get_admin_token()}"}

    def busy() -> bool:
        for k in range(20):  # new inputs each time, so the cache does not answer them all
            requests.post(url, json={"input": [float(k), float(uuid.uuid4().int % 1000)]}, timeout=10)
        view = requests.get(view_url, headers=auth, timeout=30).json()
        app = next((a for a in view["apps"] if a["name"] == "docker-view"), None)
        return (
            bool(view["frontends"])
            and all(f["up"] for f in view["frontends"])
            and (app is not None and app["requests_per_s"] > 0)
        )

    wait_until(busy, 60, "the app's traffic in the cluster view")
    view = requests.get(view_url, headers=auth, timeout=30).json()
    model = next(m for m in view["models"] if m["name"] == "m")
    assert model["replicas"] == 1 and model["queue_bound"] is not None
