"""LocalContainerManager with real processes: stop leaves nothing, clusters coexist, pids are checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis
import requests
from click.testing import CliRunner

from clipper.admin import ClipperConnection, LocalContainerManager
from clipper.admin.deployers.python import create_endpoint
from clipper.admin.managers.process import ProcessRecord, ProcessTable, is_alive
from clipper.cli import cli
from clipper.errors import ClusterError
from tests.admin.conftest import make_manager, predict_until
from tests.conftest import free_port, wait_until


def gone(rec: ProcessRecord) -> bool:
    """The recorded process no longer exists (its pid is free or belongs to a newer process)."""
    try:
        return psutil.Process(rec.pid).create_time() != rec.create_time
    except psutil.NoSuchProcess:
        return True


def restarted(table: ProcessTable, role: str, old_pid: int) -> bool:
    """The role's record names a live process other than `old_pid`."""
    rec = table.get(role)
    return rec is not None and rec.pid != old_pid and is_alive(rec)


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
            "query-0",
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


def test_connect_without_cluster_and_with_a_dead_supervisor(tmp_path: Path) -> None:
    """connect() starts a dead supervisor again, which brings back what died while nobody watched."""
    manager = make_manager(tmp_path)
    with pytest.raises(ClusterError, match="No running cluster"):
        manager.connect()
    conn = ClipperConnection(manager)
    conn.start_clipper()
    try:
        supervisor, query = (manager.procs.get(role) for role in ("supervisor", "query-0"))
        assert supervisor is not None and query is not None and is_alive(supervisor)
        for rec in (supervisor, query):
            psutil.Process(rec.pid).kill()
            wait_until(lambda rec=rec: not is_alive(rec), what=f"{rec.role} to die")
        assert manager.get_num_frontends() == 0  # nobody restarted the query frontend

        args = ["--cluster", manager.cluster_name, "--state-dir", str(tmp_path), "status"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "supervisor was not running" in result.output  # and its connect() started it again

        other = make_manager(tmp_path, manager.cluster_name)
        other.connect()
        assert requests.get(f"http://{other.get_query_addr()}/health", timeout=5).status_code == 200
        assert restarted(other.procs, "supervisor", supervisor.pid)
    finally:
        conn.stop_all()
    assert manager.procs.records() == []


def test_killed_processes_come_back_and_stopped_ones_do_not(tmp_path: Path) -> None:
    """The supervisor restarts a SIGKILLed replica (same role and env); scaling down is never undone."""
    manager = make_manager(tmp_path)
    conn = ClipperConnection(manager)
    conn.start_clipper()
    try:
        create_endpoint(conn, "echo", "strings", lambda xs: [x.decode() for x in xs], num_replicas=2)
        victim = manager.procs.get("model-echo-1-0")
        assert victim is not None
        psutil.Process(victim.pid).kill()
        wait_until(lambda: restarted(manager.procs, "model-echo-1-0", victim.pid), what="the restart")
        back = manager.procs.get("model-echo-1-0")
        assert back is not None and back.pid != victim.pid and back.env == victim.env
        log = (manager.state_dir / "logs" / "supervisor.log").read_text()
        assert "Restarted model-echo-1-0 (exit status unknown" in log and "attempt 1" in log

        conn.set_num_replicas("echo", 1, "1")
        stopped = manager.procs.get("model-echo-1-1")
        assert stopped is None and manager.get_num_replicas("echo", "1") == 1
        # A second kill and restart proves the supervisor polled after the scale-down.
        psutil.Process(back.pid).kill()
        wait_until(lambda: restarted(manager.procs, "model-echo-1-0", back.pid), what="the second restart")
        assert manager.procs.get("model-echo-1-1") is None and manager.get_num_replicas("echo", "1") == 1
        url = f"http://{conn.get_query_addr()}/echo/predict"
        assert predict_until(url, {"input": "hi"}, lambda a: a.get("default") is False)["output"] == "hi"
    finally:
        conn.stop_all()


def test_query_frontends_scale_out_and_in_and_containers_follow(tmp_path: Path) -> None:
    """Frontends share the query port; a container started against one is served by all of them."""
    manager = make_manager(tmp_path)
    conn = ClipperConnection(manager)
    conn.start_clipper(num_frontend_replicas=2)
    try:
        assert manager.get_num_frontends() == 2
        create_endpoint(conn, "echo", "strings", lambda xs: [x.decode() for x in xs])
        # Both frontends hold a connection to the one container: two replica records.
        wait_until(
            lambda: len(conn.get_all_model_replicas()) == 2, what="the container to join both frontends"
        )
        manager.set_num_frontends(3)
        wait_until(lambda: len(conn.get_all_model_replicas()) == 3, what="the container to join the third")
        url = f"http://{conn.get_query_addr()}/echo/predict"
        for _ in range(20):  # new connections land on any of the frontends
            with requests.Session() as session:
                assert session.post(url, json={"input": "x"}, timeout=10).json()["output"] == "x"
        manager.set_num_frontends(1)
        assert manager.get_num_frontends() == 1
        wait_until(lambda: len(conn.get_all_model_replicas()) == 1, what="departed frontends' records to go")
        assert requests.post(url, json={"input": "y"}, timeout=10).json()["output"] == "y"
        model_procs = [r for r in manager.procs.records() if r.model_name == "echo"]
        assert len(model_procs) == 1 and is_alive(model_procs[0])  # the container never restarted
    finally:
        conn.stop_all()


def test_steady_load_while_frontends_scale_and_one_is_killed(tmp_path: Path) -> None:
    """Every query is answered while frontends go 1 -> 3 -> 1 and one is SIGKILLed; no container restarts.

    The client opens a connection per request and retries on a connection error, as a client behind any
    load balancer does: that is how a query in flight on the killed frontend gets its answer. (A connection
    still in the accept queue of a frontend that closes its listener is reset by the kernel unless
    net.ipv4.tcp_migrate_req=1; with two frontends stopping at once a query may meet two resets.)
    """
    import threading

    manager = make_manager(tmp_path)
    conn = ClipperConnection(manager)
    conn.start_clipper()
    create_endpoint(conn, "sum", "doubles", lambda xs: [str(sum(x)) for x in xs], num_replicas=2)
    url = f"http://{conn.get_query_addr()}/sum/predict"
    outcomes: list[str] = []
    retries: list[str] = []
    stop = threading.Event()

    def client() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            for attempt in range(3):
                try:
                    reply = requests.post(url, json={"input": [float(i), 1.0]}, timeout=30).json()
                except requests.ConnectionError as e:
                    retries.append(str(e))
                    if attempt == 2:
                        outcomes.append("lost")
                    continue
                outcomes.append("default" if reply["default"] else str(reply["output"] == float(i) + 1.0))
                break

    threads = [threading.Thread(target=client) for _ in range(4)]
    try:
        model_pids = {r.pid for r in manager.procs.records() if r.model_name == "sum"}
        for t in threads:
            t.start()
        wait_until(lambda: len(outcomes) > 50, what="load to flow")
        manager.set_num_frontends(3)
        wait_until(lambda: len(conn.get_all_model_replicas()) == 6, what="containers to join 3 frontends")
        mark = len(outcomes)
        wait_until(lambda: len(outcomes) > mark + 100, what="load on three frontends")
        victim = manager.frontends()[1]
        psutil.Process(victim.pid).kill()
        mark = len(outcomes)
        wait_until(lambda: len(outcomes) > mark + 100, what="load after the kill")
        manager.set_num_frontends(1)
        mark = len(outcomes)
        wait_until(lambda: len(outcomes) > mark + 100, what="load on one frontend again")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        try:
            assert {r.pid for r in manager.procs.records() if r.model_name == "sum"} == model_pids
            assert all(is_alive(r) for r in manager.procs.records() if r.model_name == "sum")
        finally:
            conn.stop_all()
    predictions, defaults = outcomes.count("True"), outcomes.count("default")
    print(f"answered {len(outcomes)}: {predictions} predictions, {defaults} defaults, {len(retries)} retried")
    assert "lost" not in outcomes
    assert "False" not in outcomes  # no wrong answer
    assert defaults == 0  # a new or restarted frontend takes queries only once the replicas joined it
    assert outcomes.count("True") > 300
