"""A local cluster's secrets with real processes: tokens required, files owner-only, no value leaks out."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from clipper.admin import ClipperConnection, ClipperException, LocalContainerManager
from clipper.admin.managers.process import is_alive, process_of
from clipper.runtime.closure import save_closure
from tests.admin.conftest import make_manager, predict_until, running_cluster

SECRET_FILES = {"auth_token", "rpc_token", "redis_password"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalContainerManager]:
    """A default cluster (admin and RPC auth on) serving one model, stopped afterwards."""
    tmp = tmp_path_factory.mktemp("secure")
    with running_cluster(tmp / "state") as conn:
        model_dir = tmp / "model"
        save_closure(lambda xs: [str(sum(x)) for x in xs], model_dir)
        conn.register_application("sum", "doubles", "-1", 1_000_000)
        conn.deploy_model("sum", "1", "doubles", str(model_dir))
        conn.link_model_to_app("sum", "sum")
        yield conn.cm


def secret_values(manager: LocalContainerManager) -> dict[str, str]:
    values = {name: manager.secrets.read(name) for name in SECRET_FILES}
    assert all(values.values()), values
    return {k: v for k, v in values.items() if v is not None}


def test_management_api_wants_the_token(cluster: LocalContainerManager) -> None:
    url = f"http://{cluster.get_admin_addr()}/admin/get_all_applications"
    refused = requests.post(url, json={"verbose": False}, timeout=10)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    token = cluster.secrets.read("auth_token")
    accepted = requests.post(url, json={"verbose": False}, headers={"Authorization": f"Bearer {token}"})
    assert accepted.status_code == 200 and accepted.json() == ["sum"]
    assert requests.get(f"http://{cluster.get_admin_addr()}/admin/ping", timeout=10).text == "PONG"


def test_secret_files_are_owner_only(cluster: LocalContainerManager) -> None:
    directory = cluster.state_dir / "secrets"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    present = {p.name for p in directory.iterdir()}
    assert SECRET_FILES <= present and "query_token" not in present
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_fresh_connection_finds_the_token(cluster: LocalContainerManager) -> None:
    """What another process does: a new manager object on the same cluster name and state directory."""
    conn = ClipperConnection(LocalContainerManager(cluster.cluster_name, state_dir=cluster.state_dir))
    conn.connect()
    assert conn.get_all_apps() == ["sum"]
    assert conn.get_linked_models("sum") == ["sum"]


def test_a_client_without_the_token_gets_a_clear_error(
    cluster: LocalContainerManager, tmp_path: Path
) -> None:
    """A manager that cannot read the secrets (another state dir copy) is refused with a 401 message."""
    elsewhere = LocalContainerManager(cluster.cluster_name, state_dir=tmp_path)
    elsewhere.info = cluster.info
    conn = ClipperConnection(elsewhere)
    conn.connected = True
    with pytest.raises(ClipperException, match="401"):
        conn.get_all_apps()


def test_redis_refuses_a_client_without_the_password(cluster: LocalContainerManager) -> None:
    assert cluster.info is not None
    anonymous = redis.Redis(port=cluster.info.redis_port, socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    password = cluster.secrets.read("redis_password")
    with redis.Redis(port=cluster.info.redis_port, password=password, socket_timeout=5) as client:
        assert client.ping()


def test_models_still_answer(cluster: LocalContainerManager) -> None:
    url = f"http://{cluster.get_query_addr()}/sum/predict"
    answer = predict_until(url, {"input": [1.0, 2.0]}, lambda a: not a["default"])
    assert answer["output"] == 3.0


def test_no_secret_in_logs_records_command_lines_or_environments(
    cluster: LocalContainerManager, tmp_path: Path
) -> None:
    # A refused call, an accepted one and a prediction first, so every log has had its chance to leak.
    requests.post(f"http://{cluster.get_admin_addr()}/admin/get_all_models", json={}, timeout=10)
    values = secret_values(cluster)
    conn = ClipperConnection(LocalContainerManager(cluster.cluster_name, state_dir=cluster.state_dir))
    conn.connect()
    copied = conn.get_clipper_logs(str(tmp_path / "logs"))
    assert copied
    files = [
        *cluster.procs.logs_dir.glob("*"),
        *cluster.procs.procs_dir.glob("*"),
        cluster.cluster_file,
        *map(Path, copied),
    ]
    texts = {str(f): f.read_text(errors="replace") for f in files if f.is_file()}
    live = [r for r in cluster.procs.records() if is_alive(r)]
    assert {r.role.split("-")[0] for r in live} >= {"redis", "management", "query", "model"}
    for rec in live:
        proc = process_of(rec)
        assert proc is not None
        texts[f"cmdline of {rec.role}"] = " ".join(proc.cmdline())
        texts[f"environment of {rec.role}"] = " ".join(f"{k}={v}" for k, v in proc.environ().items())
    for name, value in values.items():
        leaks = [where for where, text in texts.items() if value in text]
        assert not leaks, f"{name} appears in {leaks}"
    assert any("CLIPPER_SECRETS_DIR" in t for t in texts.values())  # what they get instead


def test_secrets_survive_a_restart(tmp_path: Path) -> None:
    manager = make_manager(tmp_path)
    conn = ClipperConnection(manager)
    conn.start_clipper()
    try:
        before = secret_values(manager)
        manager.stop_all()
        conn.start_clipper()
        assert secret_values(manager) == before
        assert conn.get_all_apps() == []
    finally:
        manager.stop_all()


def test_auth_off_leaves_the_api_open_for_clipper_clients(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, admin_auth=False, rpc_auth=False)
    ClipperConnection(manager).start_clipper()
    try:
        present = {p.name for p in (tmp_path / "secrets").iterdir()}
        assert "auth_token" not in present and "rpc_token" not in present
        url = f"http://{manager.get_admin_addr()}/admin/get_all_applications"
        assert requests.post(url, json={"verbose": False}, timeout=10).status_code == 200
    finally:
        manager.stop_all()
