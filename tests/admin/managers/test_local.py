"""LocalContainerManager with real processes: stop leaves nothing, clusters coexist, pids are checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis
import requests

from clipper.admin import ClipperConnection, LocalContainerManager
from clipper.admin.deployers.python import create_endpoint
from clipper.admin.managers.process import ProcessRecord, ProcessTable, is_alive
from clipper.errors import ClusterError
from tests.admin.conftest import make_manager, predict_until
from tests.conftest import free_port


def gone(rec: ProcessRecord) -> bool:
    """The recorded process no longer exists (its pid is free or belongs to a newer process)."""
    try:
        return psutil.Process(rec.pid).create_time() != rec.create_time
    except psutil.NoSuchProcess:
        return True


def test_stop_all_leaves_no_process(tmp_path: Path) -> None:
    manager = make_manager(tmp_path)
    conn = ClipperConnection(manager)
    conn.start_clipper()
    try:
        create_endpoint(conn, "echo", "strings", lambda xs: list(xs), num_replicas=2)
        records = manager.procs.records()
        assert {r.role for r in records} >= {
            "redis",
            "management",
            "query",
            "model-echo-1-0",
            "model-echo-1-1",
        }
        assert all(is_alive(r) for r in records)
        assert all(
            (manager.state_dir / "procs" / f"{r.role}.pid").read_text().strip() == str(r.pid) for r in records
        )
        assert manager.cluster_file.exists()
        with pytest.raises(ClusterError, match="already exists"):
            manager.start_clipper()
    finally:
        conn.stop_all()
    assert all(gone(r) for r in records)
    assert manager.procs.records() == [] and not manager.cluster_file.exists()
    assert (manager.state_dir / "redis" / "appendonlydir").exists() or list(
        (manager.state_dir / "redis").iterdir()
    )


def test_two_clusters_side_by_side(tmp_path: Path) -> None:
    conns = [ClipperConnection(make_manager(tmp_path / name, name)) for name in ("left", "right")]
    try:
        for conn, word in zip(conns, ("L", "R"), strict=True):
            conn.start_clipper()
            create_endpoint(conn, "which", "strings", lambda xs, w=word: [w for _ in xs])
        for conn, word in zip(conns, ("L", "R"), strict=True):
            url = f"http://{conn.get_query_addr()}/which/predict"
            assert predict_until(url, {"input": "?"}, lambda a: a.get("default") is False)["output"] == word
        assert conns[0].get_query_addr() != conns[1].get_query_addr()
    finally:
        for conn in conns:
            conn.stop_all()


def test_user_redis_is_left_alone(tmp_path: Path, redis_url: str, redis_port: int) -> None:
    manager = LocalContainerManager(
        cluster_name="user-redis",
        clipper_query_port=free_port(),
        clipper_management_port=free_port(),
        clipper_rpc_port=free_port(),
        redis_ip="127.0.0.1",
        redis_port=redis_port,
        state_dir=tmp_path,
    )
    conn = ClipperConnection(manager)
    conn.start_clipper()
    try:
        conn.register_application("on-user-redis", "doubles", "0", 1000)
        assert "redis" not in {r.role for r in manager.procs.records()}
    finally:
        conn.stop_all()
    client = redis.Redis(port=redis_port, db=5)
    assert client.ping() and client.exists("on-user-redis")
    client.close()


def test_recycled_pid_is_never_signalled(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        table = ProcessTable(tmp_path)
        stale = ProcessRecord(
            role="query",
            pid=bystander.pid,
            create_time=psutil.Process(bystander.pid).create_time() - 100,
            cmd=["python"],
            env={},
            log_path=str(tmp_path / "x.log"),
        )
        assert not is_alive(stale)
        table.stop([stale], graceful=False)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_connect_without_cluster_and_stale_records(tmp_path: Path) -> None:
    manager = make_manager(tmp_path)
    with pytest.raises(ClusterError, match="No running cluster"):
        manager.connect()
    conn = ClipperConnection(manager)
    conn.start_clipper()
    admin_addr = conn.cm.get_admin_addr()
    query = next(r for r in manager.procs.records() if r.role == "query")
    psutil.Process(query.pid).kill()
    psutil.Process(query.pid).wait(10)
    try:
        with pytest.raises(ClusterError, match="No running cluster"):
            make_manager(tmp_path, manager.cluster_name).connect()
    finally:
        conn.stop_all()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{admin_addr}/admin/ping", timeout=2)
