"""Replica management over HTTP on a real local cluster: the management frontend scales a model version
through the cluster's own LocalContainerManager, lists its processes and reads their logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from clipper.admin import ClipperConnection
from clipper.admin.clipper_images import NOOP_PREDICT_MODULE
from clipper.admin.deployers.python import deploy_python_closure
from tests.conftest import free_port, wait_until


class Admin:
    """Calls to one cluster's /admin with its bearer token."""

    def __init__(self, conn: ClipperConnection) -> None:
        self.base = f"http://{conn.cm.get_admin_addr()}/admin"
        self.headers = {"Authorization": f"Bearer {conn.cm.get_admin_token()}"}

    def post(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return requests.post(f"{self.base}/{path}", json=body, headers=self.headers, timeout=60, **kw)

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.base}/{path}", params=params, headers=self.headers, timeout=30)


@pytest.fixture(scope="module")
def admin(cluster: ClipperConnection) -> Admin:
    cluster.deploy_model("ops", "1", "doubles", NOOP_PREDICT_MODULE)
    return Admin(cluster)


def scale(admin: Admin, n: int) -> requests.Response:
    return admin.post("set_num_replicas", {"model_name": "ops", "model_version": "1", "num_replicas": n})


def test_scale_up_and_down_through_the_api(cluster: ClipperConnection, admin: Admin) -> None:
    assert cluster.get_num_replicas("ops", "1") == 1
    r = scale(admin, 2)
    assert r.status_code == 200, r.text
    assert cluster.get_num_replicas("ops", "1") == 2
    cluster.wait_for_model("ops", "1", num_replicas=2, timeout_s=30)

    listed = admin.get("get_replicas", model_name="ops", model_version="1").json()
    pids = {str(rec.pid) for rec in cluster.cm.replicas("ops", "1")}  # type: ignore[attr-defined]
    assert {r["replica"] for r in listed} == pids
    assert all(r["kind"] == "process" and r["state"] == "running" for r in listed)
    assert all(r["uptime_s"] >= 0 and r["started_at"] > 1e9 for r in listed)

    assert scale(admin, 1).status_code == 200
    assert cluster.get_num_replicas("ops", "1") == 1
    assert len(admin.get("get_replicas", model_name="ops", model_version="1").json()) == 1


def test_logs_of_each_replica(cluster: ClipperConnection, admin: Admin) -> None:
    [pid] = [str(rec.pid) for rec in cluster.cm.replicas("ops", "1")]  # type: ignore[attr-defined]

    def logged() -> list[str]:
        r = admin.get("get_model_logs", model_name="ops", model_version="1", lines=5)
        assert r.status_code == 200, r.text
        return list(r.json()["lines"])

    wait_until(lambda: bool(logged()), 30, "the replica to log a line")
    lines = logged()
    assert 0 < len(lines) <= 5
    assert all(line.startswith(f"[{pid}] ") for line in lines)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model_name": "ops", "model_version": "1", "num_replicas": -1}, "num_replicas"),
        ({"model_name": "ops", "model_version": "1", "num_replicas": 1000}, "num_replicas"),
        ({"model_name": "ops", "model_version": "1", "num_replicas": "2"}, "num_replicas"),
        ({"model_name": "ops", "model_version": "1"}, "num_replicas"),
        ({"model_name": "ops", "model_version": "1", "num_replicas": 1, "x": 1}, "x"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(admin: Admin, body: dict[str, Any], field: str) -> None:
    r = admin.post("set_num_replicas", body)
    assert r.status_code == 400
    assert field in r.text


def test_bad_json_and_bad_query_are_400(admin: Admin) -> None:
    r = requests.post(f"{admin.base}/set_num_replicas", data=b"{", headers=admin.headers, timeout=10)
    assert r.status_code == 400 and "JSON parse error" in r.text
    r = admin.get("get_model_logs", model_name="ops", model_version="1", lines=0)
    assert r.status_code == 400 and "lines" in r.text
    r = admin.get("get_replicas", model_name="ops")
    assert r.status_code == 400 and "model_version" in r.text


def test_unknown_model_is_refused_and_nothing_runs(cluster: ClipperConnection, admin: Admin) -> None:
    r = admin.post("set_num_replicas", {"model_name": "nope", "model_version": "1", "num_replicas": 1})
    assert r.status_code == 400 and "'nope'" in r.text and "does not exist" in r.text
    assert cluster.get_num_replicas("nope", "1") == 0
    assert admin.get("get_replicas", model_name="ops", model_version="9").status_code == 400
    assert admin.get("get_model_logs", model_name="nope", model_version="1").status_code == 400


def test_calls_need_the_admin_token(admin: Admin) -> None:
    body = {"model_name": "ops", "model_version": "1", "num_replicas": 3}
    assert requests.post(f"{admin.base}/set_num_replicas", json=body, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    r = requests.get(f"{admin.base}/get_replicas", params={"model_name": "ops"}, headers=wrong, timeout=10)
    assert r.status_code == 401
    assert requests.get(f"{admin.base}/get_model_logs", timeout=10).status_code == 401


def test_a_frontend_started_without_a_manager_says_how_to_enable_it(redis_url: str, tmp_path: Path) -> None:
    """A management frontend run by hand (no CLIPPER_REPLICA_CONTROL) validates as ever, then answers 501."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/admin"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPPER_")}
    env |= {"CLIPPER_REDIS_URL": redis_url, "CLIPPER_MANAGEMENT_PORT": str(port)}
    with open(tmp_path / "management.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clipper.frontends.management"], env=env, stdout=log, stderr=log
        )
    try:
        wait_until(lambda: _status(f"{base}/ping") == 200, 30, "the management frontend")
        model = {"model_name": "m", "model_version": "1", "labels": [], "input_type": "doubles",
                 "container_name": "img:1", "model_data_path": "DEPRECATED", "batch_size": -1}  # fmt: skip
        assert requests.post(f"{base}/add_model", json=model, timeout=10).status_code == 200
        body = {"model_name": "m", "model_version": "1", "num_replicas": 2}
        r = requests.post(f"{base}/set_num_replicas", json=body, timeout=10)
        assert r.status_code == 501
        assert "CLIPPER_REPLICA_CONTROL" in r.text and "mount_docker_socket=True" in r.text
        params = {"model_name": "m", "model_version": "1"}
        assert requests.get(f"{base}/get_replicas", params=params, timeout=10).status_code == 501
        unknown = requests.post(f"{base}/set_num_replicas", json=body | {"model_name": "x"}, timeout=10)
        assert (
            unknown.status_code == 400
        )  # validation first: the model must exist whatever the frontend can do
    finally:
        proc.terminate()
        proc.wait(10)


def _status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.ConnectionError:
        return None


def test_replicas_added_through_the_api_keep_the_models_input_shape(
    cluster: ClipperConnection, admin: Admin
) -> None:
    """A shaped model's new replicas get CLIPPER_INPUT_SHAPE, as those its deploy started."""
    deploy_python_closure(
        cluster, "shaped-ops", "1", "doubles", lambda xs: [str(x.shape) for x in xs], input_shape=[2, 3]
    )
    body = {"model_name": "shaped-ops", "model_version": "1", "num_replicas": 2}
    assert admin.post("set_num_replicas", body).status_code == 200
    pids = [rec.pid for rec in cluster.cm.replicas("shaped-ops", "1")]  # type: ignore[attr-defined]
    assert len(pids) == 2
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"CLIPPER_INPUT_SHAPE=2,3" in environ, pid
