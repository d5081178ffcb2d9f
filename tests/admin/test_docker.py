"""DockerContainerManager on a real engine: cluster lifecycle, labels, replicas, predictions, cleanup."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import docker
import psutil
import pytest
import redis
import requests

from clipper.admin.connection import ClipperConnection
from clipper.admin.exceptions import ClipperException
from clipper.admin.managers.base import CLIPPER_DOCKER_LABEL, CLIPPER_MODEL_CONTAINER_LABEL
from clipper.admin.managers.docker import DockerContainerManager
from clipper.runtime.closure import save_closure
from tests.admin.conftest import PACKAGE, DockerManagers, ordinal_model, predict_until
from tests.conftest import free_port, wait_until

pytestmark = pytest.mark.docker


def start(manager: DockerContainerManager, image: str) -> None:
    manager.start_clipper(image, image, image, 1024, 1, 5, 300)


def leftovers(client: docker.DockerClient, cluster: str, state: bool = True) -> list[object]:
    """The cluster's containers and networks, and its volumes unless `state` is False (stop_all keeps the
    Redis volume: the cluster's state, which only `remove_state=True` deletes)."""
    label = {"label": f"{CLIPPER_DOCKER_LABEL}={cluster}"}
    return [
        *client.containers.list(all=True, filters=label),
        *client.networks.list(filters=label),
        *(client.volumes.list(filters=label) if state else []),
    ]


def test_start_connect_logs_stop(
    make_docker_manager: DockerManagers,
    docker_client: docker.DockerClient,
    runtime_image: str,
    tmp_path: Path,
) -> None:
    manager = make_docker_manager()
    start(manager, runtime_image)
    roles = sorted(
        c.labels["ai.clipper.name"]
        for c in docker_client.containers.list(
            filters={"label": f"{CLIPPER_DOCKER_LABEL}={manager.cluster_name}"}
        )
    )
    assert roles == ["management_frontend", "query_frontend", "redis"]
    label = {"label": f"{CLIPPER_DOCKER_LABEL}={manager.cluster_name}"}
    assert len(docker_client.volumes.list(filters=label)) == 1  # Redis's data

    again = DockerContainerManager(cluster_name=manager.cluster_name)
    again.connect()
    assert again.get_query_addr() == manager.get_query_addr()
    assert again.get_admin_addr() == manager.get_admin_addr()
    assert again.redis_url == manager.redis_url

    logs = again.get_logs(str(tmp_path / "logs"))
    assert len(logs) == 3 and all(Path(p).name.startswith("image_") for p in logs)
    assert any("Ready to accept connections" in Path(p).read_text() for p in logs)

    again.stop_all(graceful=True)
    kept = leftovers(docker_client, manager.cluster_name)
    assert [v.name for v in docker_client.volumes.list(filters=label)] == [v.name for v in kept]  # type: ignore[attr-defined]
    again.stop_all(graceful=True, remove_state=True)
    assert leftovers(docker_client, manager.cluster_name) == []


def test_two_clusters_coexist(
    make_docker_manager: DockerManagers, docker_client: docker.DockerClient, runtime_image: str
) -> None:
    first, second = make_docker_manager(), make_docker_manager()
    start(first, runtime_image)
    start(second, runtime_image)
    with pytest.raises(Exception, match="already exists"):
        start(
            DockerContainerManager(cluster_name=first.cluster_name, clipper_query_port=free_port()),
            runtime_image,
        )
    first.stop_all()
    assert leftovers(docker_client, first.cluster_name, state=False) == []
    first.stop_all(remove_state=True)
    assert leftovers(docker_client, first.cluster_name) == []
    running = docker_client.containers.list(
        filters={"label": f"{CLIPPER_DOCKER_LABEL}={second.cluster_name}"}
    )
    assert len(running) == 3


def test_replicas_scale_up_and_are_removed_on_scale_down(
    make_docker_manager: DockerManagers,
    docker_client: docker.DockerClient,
    runtime_image: str,
    tmp_path: Path,
) -> None:
    manager = make_docker_manager()
    start(manager, runtime_image)
    image = manager.build_model("ordinal", "1", str(ordinal_model(tmp_path)), runtime_image, None, [PACKAGE])
    assert image == f"{manager.cluster_name}-ordinal:1"
    manager.deploy_model("ordinal", "1", "strings", image, num_replicas=1)
    manager.set_num_replicas("ordinal", "1", "strings", image, 3)
    assert manager.get_num_replicas("ordinal", "1") == 3
    manager.set_num_replicas("ordinal", "1", "strings", image, 1)
    assert manager.get_num_replicas("ordinal", "1") == 1
    label = {
        "label": [
            f"{CLIPPER_DOCKER_LABEL}={manager.cluster_name}",
            f"{CLIPPER_MODEL_CONTAINER_LABEL}=ordinal_1",
        ]
    }
    assert len(docker_client.containers.list(all=True, filters=label)) == 1
    manager.stop_models({"ordinal": ["1"]})
    assert docker_client.containers.list(all=True, filters=label) == []
    docker_client.images.remove(image, force=True)


def test_clipper_flow_predict_scale_version_logs_stop(
    make_docker_manager: DockerManagers,
    docker_client: docker.DockerClient,
    runtime_image: str,
    tmp_path: Path,
) -> None:
    manager = make_docker_manager()
    conn = ClipperConnection(manager)
    conn.start_clipper()  # Clipper's default image names run as our runtime image
    conn.register_application("words", "strings", "default", 1_000_000)
    conn.build_and_deploy_model(
        "ordinal", "1", "strings", str(ordinal_model(tmp_path)), runtime_image, pkgs_to_install=[PACKAGE]
    )
    conn.link_model_to_app("words", "ordinal")
    url = f"http://{manager.get_query_addr()}/words/predict"
    answer = predict_until(url, {"input": "abc"}, lambda a: a.get("output") == "3rd", timeout_s=60)
    assert answer["output"] == "3rd", answer

    conn.set_num_replicas("ordinal", 3)
    assert conn.get_num_replicas("ordinal") == 3
    conn.set_num_replicas("ordinal", 1)
    assert conn.get_num_replicas("ordinal") == 1

    def shout(inputs: list[bytes]) -> list[str]:
        return [x.decode().upper() for x in inputs]  # strings arrive as bytes, as in Clipper

    save_closure(shout, tmp_path / "v2")
    clipper_base = "clipper/python311-closure-container:0.4.1"  # a Clipper 0.4 base name maps the same way
    conn.build_and_deploy_model("ordinal", "2", "strings", str(tmp_path / "v2"), clipper_base)
    conn.set_model_version("ordinal", "2")
    answer = predict_until(url, {"input": "abc"}, lambda a: a.get("output") == "ABC", timeout_s=60)
    assert answer["output"] == "ABC", answer

    logs = conn.get_clipper_logs(str(tmp_path / "logs"))
    assert len(logs) == 5  # redis, two frontends, one replica of each version
    conn.stop_all()
    assert leftovers(docker_client, manager.cluster_name, state=False) == []
    conn.stop_all(remove_state=True)
    assert leftovers(docker_client, manager.cluster_name) == []
    for version in ("1", "2"):
        docker_client.images.remove(f"{manager.cluster_name}-ordinal:{version}", force=True)


def test_query_frontends_scale_out_and_in_and_containers_follow(
    make_docker_manager: DockerManagers,
    docker_client: docker.DockerClient,
    runtime_image: str,
    tmp_path: Path,
) -> None:
    """Two frontends share the query port; the one model container serves both, then the one left."""
    manager = make_docker_manager()
    conn = ClipperConnection(manager)
    conn.start_clipper(runtime_image, runtime_image, num_frontend_replicas=2)
    assert manager.get_num_frontends() == 2
    conn.register_application("words", "strings", "default", 1_000_000)

    def shout(inputs: list[bytes]) -> list[str]:
        return [x.decode().upper() for x in inputs]

    save_closure(shout, tmp_path / "shout")
    conn.build_and_deploy_model("shout", "1", "strings", str(tmp_path / "shout"), runtime_image)
    conn.link_model_to_app("words", "shout")
    # The container dialled one frontend and learned the other from it: one replica record per frontend.
    wait_until(lambda: len(conn.get_all_model_replicas()) == 2, 60, "the container to join both frontends")
    shout_label = {
        "label": [
            f"{CLIPPER_DOCKER_LABEL}={manager.cluster_name}",
            f"{CLIPPER_MODEL_CONTAINER_LABEL}=shout_1",
        ]
    }
    (model,) = docker_client.containers.list(filters=shout_label)
    url = f"http://{manager.get_query_addr()}/words/predict"
    for i in range(20):  # a new connection each time lands on either frontend
        with requests.Session() as session:
            answer = session.post(url, json={"input": f"a{i}"}, timeout=10).json()
        assert answer == {**answer, "output": f"A{i}", "default": False}, answer

    manager.set_num_frontends(1)
    assert manager.get_num_frontends() == 1
    wait_until(lambda: len(conn.get_all_model_replicas()) == 1, 60, "the stopped frontend's record to go")
    for i in range(5):
        with requests.Session() as session:
            answer = session.post(url, json={"input": f"b{i}"}, timeout=10).json()
        assert answer == {**answer, "output": f"B{i}", "default": False}, answer

    again = DockerContainerManager(cluster_name=manager.cluster_name)  # scale out from another process
    again.connect()
    again.set_num_frontends(2)  # the new frontend copies the running one's image and settings
    assert again.get_num_frontends() == 2
    wait_until(lambda: len(conn.get_all_model_replicas()) == 2, 60, "the container to join the new one")
    model.reload()
    assert model.status == "running" and model.attrs["RestartCount"] == 0  # never restarted
    assert [c.id for c in docker_client.containers.list(all=True, filters=shout_label)] == [model.id]
    conn.stop_all()
    assert leftovers(docker_client, manager.cluster_name, state=False) == []
    conn.stop_all(remove_state=True)
    assert leftovers(docker_client, manager.cluster_name) == []
    docker_client.images.remove(f"{manager.cluster_name}-shout:1", force=True)


@pytest.mark.skipif(
    os.environ.get("CLIPPER_TEST_DOCKER_BRIDGE") != "1",
    reason="bridge test off: set CLIPPER_TEST_DOCKER_BRIDGE=1 (containers get 198.18.0.0/16 addresses)",
)
def test_user_defined_bridge_network(
    make_docker_manager: DockerManagers,
    docker_client: docker.DockerClient,
    runtime_image: str,
    tmp_path: Path,
) -> None:
    manager = make_docker_manager(network_mode=None, docker_network=f"net-{uuid.uuid4().hex[:6]}")
    conn = ClipperConnection(manager)
    conn.start_clipper(query_frontend_image=runtime_image, mgmt_frontend_image=runtime_image)
    assert manager.redis_url == f"redis://{manager.cluster_name}-redis:6379"
    conn.register_application("words", "strings", "default", 1_000_000)
    conn.build_and_deploy_model(
        "ordinal", "1", "strings", str(ordinal_model(tmp_path)), runtime_image, pkgs_to_install=[PACKAGE]
    )
    conn.link_model_to_app("words", "ordinal")
    url = f"http://{manager.get_query_addr()}/words/predict"
    answer = predict_until(url, {"input": "ab"}, lambda a: a.get("output") == "2nd", timeout_s=60)
    assert answer["output"] == "2nd", answer
    conn.stop_all()
    assert leftovers(docker_client, manager.cluster_name, state=False) == []
    conn.stop_all(remove_state=True)
    assert leftovers(docker_client, manager.cluster_name) == []
    docker_client.images.remove(f"{manager.cluster_name}-ordinal:1", force=True)


def test_clipper_0_4_quickstart_runs_unchanged_but_for_host_networking(
    make_docker_manager: DockerManagers, docker_client: docker.DockerClient, runtime_image: str
) -> None:
    """Clipper 0.4's README flow through the `clipper_admin` import paths, on the Docker manager."""
    from clipper_admin import ClipperConnection as Clipper04Connection
    from clipper_admin.deployers import python as python_deployer

    manager = make_docker_manager()  # host networking is the default here; Clipper 0.4 refused it
    clipper_conn = Clipper04Connection(manager)
    clipper_conn.start_clipper()

    def feature_sum(xs):  # type: ignore[no-untyped-def]
        return [str(sum(x)) for x in xs]

    python_deployer.create_endpoint(clipper_conn, "simple-example", "doubles", feature_sum)
    url = f"http://{clipper_conn.get_query_addr()}/simple-example/predict"
    answer = predict_until(url, {"input": [1.1, 2.2, 3.3]}, lambda a: a.get("default") is False, timeout_s=90)
    assert abs(float(answer["output"]) - 6.6) < 1e-9, answer
    clipper_conn.stop_all()
    assert leftovers(docker_client, manager.cluster_name, state=False) == []
    clipper_conn.stop_all(remove_state=True)
    assert leftovers(docker_client, manager.cluster_name) == []
    docker_client.images.remove(f"{manager.cluster_name}-simple-example:1", force=True)


def test_secrets_reach_containers_only_as_read_only_files(
    make_docker_manager: DockerManagers,
    docker_client: docker.DockerClient,
    runtime_image: str,
    tmp_path: Path,
) -> None:
    """Admin token required, Redis password set, and no secret in any container's inspect data or log."""
    manager = make_docker_manager()
    conn = ClipperConnection(manager)
    conn.start_clipper(runtime_image, runtime_image)
    conn.register_application("sum", "doubles", "-1", 1_000_000)
    save_closure(lambda xs: [str(sum(x)) for x in xs], tmp_path / "sum")
    conn.build_and_deploy_model("sum", "1", "doubles", str(tmp_path / "sum"), runtime_image)
    conn.link_model_to_app("sum", "sum")
    url = f"http://{manager.get_query_addr()}/sum/predict"
    assert predict_until(url, {"input": [1.0, 2.0]}, lambda a: a.get("default") is False)["output"] == 3.0

    admin = f"http://{manager.get_admin_addr()}/admin/get_all_applications"
    assert requests.post(admin, json={"verbose": False}, timeout=10).status_code == 401
    again = ClipperConnection(DockerContainerManager(cluster_name=manager.cluster_name))
    again.connect()  # another process: the token comes from this host's secrets directory
    assert again.get_all_apps() == ["sum"]
    values = {n: manager.secrets.read(n) for n in ("auth_token", "rpc_token", "redis_password")}
    assert all(values.values()), values
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=manager.ports["redis"], socket_timeout=5).ping()

    containers = docker_client.containers.list(
        filters={"label": f"{CLIPPER_DOCKER_LABEL}={manager.cluster_name}"}
    )
    assert len(containers) == 4
    texts = {f"inspect {c.name}": json.dumps(c.attrs) for c in containers}
    texts |= {f"logs {c.name}": c.logs().decode(errors="replace") for c in containers}
    texts |= {p: Path(p).read_text(errors="replace") for p in conn.get_clipper_logs(str(tmp_path / "l"))}
    for name, value in values.items():
        assert value is not None
        leaks = [where for where, text in texts.items() if value in text]
        assert not leaks, f"{name} appears in {leaks}"
    (model,) = [c for c in containers if c.labels["ai.clipper.name"] == "model"]
    assert [(m["Destination"], m["RW"]) for m in model.attrs["Mounts"]] == [
        ("/run/secrets/clipper/rpc_token", False)
    ]
    conn.stop_all()
    docker_client.images.remove(f"{manager.cluster_name}-sum:1", force=True)


def test_the_engine_restarts_a_crashed_container_and_redis_keeps_its_data(
    make_docker_manager: DockerManagers, docker_client: docker.DockerClient, runtime_image: str
) -> None:
    """Every container runs with `unless-stopped`: a process that dies comes back without user action."""
    manager = make_docker_manager()
    start(manager, runtime_image)
    conn = ClipperConnection(manager)
    conn.connect()
    # start_clipper can return while the management frontend still waits for Redis (a 503): poll.
    wait_until(lambda: _apps(conn) == [], 60, "the management API to answer")
    conn.register_application("kept", "doubles", "0", 100_000)
    label = {"label": f"{CLIPPER_DOCKER_LABEL}={manager.cluster_name}"}
    containers = docker_client.containers.list(filters=label)
    assert containers and all(
        c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped" for c in containers
    )
    redis_container = next(c for c in containers if "redis" in c.name)
    init = psutil.Process(redis_container.attrs["State"]["Pid"])  # tini; redis-server is its child
    init.children()[0].kill()  # a crash, not a `docker stop`

    def restarted() -> bool:
        redis_container.reload()
        return redis_container.attrs["RestartCount"] >= 1 and redis_container.status == "running"

    wait_until(restarted, 60, "the engine to restart the Redis container")
    wait_until(lambda: _apps(conn) == ["kept"], 60, "the management API to read the app again")


def _apps(conn: ClipperConnection) -> list[str] | None:
    try:
        return [a["name"] for a in conn.get_all_apps(verbose=True)]
    except (ClipperException, requests.RequestException):  # the management frontend is reconnecting
        return None


def test_clipper_names_map_and_stop_all_keeps_state_without_stale_replicas(
    make_docker_manager: DockerManagers,
    docker_client: docker.DockerClient,
    runtime_image: str,
    tmp_path: Path,
) -> None:
    """Clipper's noop image name runs our noop (Docker's `ancestor` filter finds it by that name); stop_all
    keeps apps and replica counts, the next start (on port 0: any free port) resumes them and lists only
    live replicas; remove_state=True leaves nothing behind."""
    manager = make_docker_manager(state_dir=tmp_path)
    conn = ClipperConnection(manager)
    conn.start_clipper()
    assert manager.centralize_log is False
    conn.register_application("kept", "doubles", "DEFAULT", 5_000_000)
    conn.deploy_model("kept", 1, "doubles", "clipper/noop-container:0.4.1", num_replicas=2)
    conn.link_model_to_app("kept", "kept")
    label = f"{CLIPPER_DOCKER_LABEL}={manager.cluster_name}"
    noop = {"ancestor": "clipper/noop-container:0.4.1", "label": label}
    assert len(docker_client.containers.list(filters=noop)) == 2
    answer = predict_until(
        f"http://{conn.get_query_addr()}/kept/predict", {"input": [1.0]}, lambda a: a.get("default") is False
    )
    assert answer["output"] == 1.0
    conn.stop_all(graceful=False)

    again = ClipperConnection(
        DockerContainerManager(cluster_name=manager.cluster_name, clipper_query_port=0, state_dir=tmp_path,
                               clipper_management_port=0, clipper_rpc_port=0, redis_port=0)
    )  # fmt: skip
    try:
        again.start_clipper()
        assert not again.get_query_addr().endswith(":0")
        assert again.get_all_apps() == ["kept"]
        replicas = again.get_all_model_replicas(verbose=True)
        assert len(replicas) == again.get_num_replicas("kept", "1") == 2
    finally:
        again.stop_all(graceful=False, remove_state=True)
    assert leftovers(docker_client, manager.cluster_name) == []
