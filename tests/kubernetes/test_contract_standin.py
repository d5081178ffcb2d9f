"""Contract tests of KubernetesContainerManager against the stand-in API server (a fake with Docker-backed
pods; see standin_apiserver.py), and the same end-to-end flow against a real cluster when
CLIPPER_TEST_KUBECONFIG names one.

The pods run the Deployments' own images, commands, env and probes, so a prediction answered here proves
the wiring the manager wrote (service names, ports, $(POD_IP) binds, secrets), not only its API calls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from clipper.admin.connection import ClipperConnection
from clipper.admin.deployers.python import deploy_python_closure
from clipper.admin.exceptions import ClipperException
from clipper.admin.managers.kubernetes import KubernetesContainerManager
from tests.admin.conftest import predict_until
from tests.conftest import wait_until
from tests.kubernetes.conftest import Standin, running_standin, standin_manager

pytestmark = pytest.mark.docker
CLUSTER_LABEL = "ai.clipper.container.label"


def times(factor: float) -> Any:
    """A closure pickled by value (a module-level function would name this test module, absent in images)."""

    def scaled(xs: list[Any]) -> list[str]:
        return [str(factor * float(sum(x))) for x in xs]

    return scaled


@pytest.fixture(scope="module")
def standin(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[Standin]:
    with running_standin(tmp_path_factory.mktemp("k8s"), docker_client) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(standin: Standin, runtime_image: str) -> Iterator[ClipperConnection]:
    """One cluster with app `sum` linked to model `m` (version 1 doubles its input's sum)."""
    manager = standin_manager(standin, runtime_image)
    conn = ClipperConnection(manager)
    conn.start_clipper()
    try:
        conn.register_application("sum", "doubles", "-1", 2_000_000)
        deploy_python_closure(conn, "m", "1", "doubles", times(2), base_image=runtime_image)
        conn.link_model_to_app("sum", "m")
        yield conn
    finally:
        manager.stop_all(graceful=False)
        remove_model_images(manager.cluster_name)


def remove_model_images(cluster: str) -> None:
    client = docker.from_env()
    for image in client.images.list():
        for tag in image.tags:
            if tag.split("/")[-1].startswith(f"{cluster}-"):
                client.images.remove(tag, force=True)


def url_of(conn: ClipperConnection, app: str = "sum") -> str:
    return f"http://{conn.get_query_addr()}/{app}/predict"


def cluster_objects(standin: Standin, cluster: str) -> list[str]:
    """Every object of `cluster` in the stand-in, as kind/name."""
    found = []
    for plural in ("deployments", "statefulsets", "services", "secrets", "serviceaccounts", "pods"):
        for obj in standin.server.store.list(plural):
            if (obj["metadata"].get("labels") or {}).get(CLUSTER_LABEL) == cluster:
                found.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return sorted(found)


def pods(standin: Standin, cluster: str, role_hint: str) -> list[str]:
    return [o for o in cluster_objects(standin, cluster) if o.startswith("Pod/") and role_hint in o]


def test_contract_standin_start_deploy_and_predict_through_the_node_port(cluster: ClipperConnection) -> None:
    host, port = cluster.get_query_addr().rsplit(":", 1)
    assert host == "127.0.0.1" and 30000 <= int(port) <= 32767  # a NodePort on the stand-in's node
    answer = predict_until(url_of(cluster), {"input": [1.0, 2.0]}, lambda a: a.get("default") is False, 60)
    assert float(answer["output"]) == 6.0, answer


def test_contract_standin_model_replicas_scale_1_3_1(cluster: ClipperConnection, standin: Standin) -> None:
    name = cluster.cm.cluster_name
    cluster.set_num_replicas("m", 3)
    assert cluster.get_num_replicas("m") == 3
    wait_until(lambda: len(cluster.get_all_model_replicas()) == 3, 30, "three replicas connected")
    cluster.set_num_replicas("m", 1)
    assert cluster.get_num_replicas("m") == 1
    wait_until(lambda: len(pods(standin, name, "-m-")) == 1, 30, "two model pods gone")
    answer = predict_until(url_of(cluster), {"input": [2.0]}, lambda a: a.get("default") is False, 30)
    assert float(answer["output"]) == 4.0, answer


def test_contract_standin_frontends_scale_1_3_1_under_load_without_loss(cluster: ClipperConnection) -> None:
    """A new frontend pod listens (and so turns Ready) only once the model's replicas have joined it."""
    url = url_of(cluster)
    predict_until(url, {"input": [1.0]}, lambda a: a.get("default") is False, 30)
    answers: list[Any] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set() and len(answers) < 20_000:
            try:
                with requests.Session() as session:  # a new connection each time: any frontend
                    reply = session.post(url, json={"input": [1.0]}, timeout=10)
                answers.append((reply.status_code, reply.json()))
            except (requests.RequestException, ValueError) as e:
                answers.append((0, repr(e)))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        cluster.cm.set_num_frontends(3)
        assert cluster.cm.get_num_frontends() == 3
        cluster.cm.set_num_frontends(1)
        assert cluster.cm.get_num_frontends() == 1
    finally:
        stop.set()
        worker.join(timeout=20)
    lost = [a for a in answers if a[0] != 200 or a[1].get("default") is not False]
    assert answers and not lost, (len(answers), lost[:5])


def test_contract_standin_version_switch(cluster: ClipperConnection, runtime_image: str) -> None:
    deploy_python_closure(cluster, "m", "2", "doubles", times(3), base_image=runtime_image)
    cluster.set_model_version("m", "2")
    answer = predict_until(url_of(cluster), {"input": [1.0]}, lambda a: a.get("output") in (3.0, "3.0"), 60)
    assert float(answer["output"]) == 3.0, answer
    cluster.set_model_version("m", "1")
    answer = predict_until(url_of(cluster), {"input": [1.0]}, lambda a: a.get("output") in (2.0, "2.0"), 60)
    assert float(answer["output"]) == 2.0, answer


def test_contract_standin_logs_are_this_clusters_pods(cluster: ClipperConnection, tmp_path: Path) -> None:
    files = cluster.get_clipper_logs(str(tmp_path / "logs"))
    names = sorted(Path(f).name for f in files)
    assert len(names) >= 4, names  # redis, management, query, a model replica at least
    assert all(n.startswith(cluster.cm.cluster_name) for n in names), names
    assert any(Path(f).read_text() for f in files)


def test_contract_standin_connect_from_a_second_process(cluster: ClipperConnection, standin: Standin) -> None:
    script = textwrap.dedent(
        f"""
        from clipper.admin.connection import ClipperConnection
        from clipper.admin.managers.kubernetes import KubernetesContainerManager
        import requests, time
        conn = ClipperConnection(KubernetesContainerManager(cluster_name={cluster.cm.cluster_name!r}))
        conn.connect()
        print(conn.get_num_replicas("m"), conn.cm.get_num_frontends())
        for _ in range(80):
            out = requests.post("http://" + conn.get_query_addr() + "/sum/predict", json={{"input": [5.0]}},
                                timeout=10).json()
            if not out["default"]:
                break
            time.sleep(0.25)
        print(out["output"])
        """
    )
    env = {**os.environ, "KUBECONFIG": str(standin.kubeconfig)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert [float(x) for x in done.stdout.split()] == [1, 1, 10.0], done.stdout


def test_contract_standin_rejected_operations_create_nothing(
    cluster: ClipperConnection, standin: Standin
) -> None:
    before = {
        plural: len(standin.server.store.list(plural)) for plural in ("deployments", "services", "namespaces")
    }
    kubeconfig = str(standin.kubeconfig)
    with pytest.raises(ClipperException, match="Namespace nowhere does not exist"):
        KubernetesContainerManager(
            cluster_name="k-x", namespace="nowhere", kubeconfig=kubeconfig
        ).start_clipper()
    with pytest.raises((ClipperException, ValueError), match="service"):
        KubernetesContainerManager(
            cluster_name="k-y", service_types={"query": "Bogus"}, kubeconfig=kubeconfig
        ).start_clipper()
    with pytest.raises(ClipperException):
        cluster.set_num_replicas("no-such-model", 2)
    after = {
        plural: len(standin.server.store.list(plural)) for plural in ("deployments", "services", "namespaces")
    }
    assert after == before


def test_contract_standin_two_clusters_in_one_namespace(
    cluster: ClipperConnection, standin: Standin, runtime_image: str
) -> None:
    frontends = cluster.cm.get_num_frontends()
    wait_until(  # pods of an earlier scale-down may still be draining
        lambda: len(pods(standin, cluster.cm.cluster_name, "-query-")) == frontends, 60, "frontends to settle"
    )
    first = cluster_objects(standin, cluster.cm.cluster_name)
    other = KubernetesContainerManager(
        cluster_name=f"k-{uuid.uuid4().hex[:6]}", image=runtime_image, kubeconfig=str(standin.kubeconfig)
    )
    other.start_clipper()
    try:
        assert cluster_objects(standin, other.cluster_name)
        other.stop_all(graceful=False)
        assert cluster_objects(standin, cluster.cm.cluster_name) == first
        wait_until(
            lambda: (
                not [o for o in cluster_objects(standin, other.cluster_name) if not o.startswith("Secret/")]
            ),
            30,
            "the other cluster's objects gone",
        )
    finally:
        other.stop_all(graceful=False, remove_state=True)
    answer = predict_until(url_of(cluster), {"input": [1.0]}, lambda a: a.get("default") is False, 30)
    assert answer["default"] is False


def test_contract_standin_stop_models_then_stop_all(cluster: ClipperConnection, standin: Standin) -> None:
    """Runs last in the module: it takes the shared cluster down."""
    name = cluster.cm.cluster_name
    cluster.stop_models({"m": ["1", "2"]})
    wait_until(lambda: not pods(standin, name, "-m-"), 30, "model pods gone")
    assert not [o for o in cluster_objects(standin, name) if o.startswith("Deployment/") and "-m-" in o]
    cluster.stop_all()
    wait_until(
        lambda: not [o for o in cluster_objects(standin, name) if not o.startswith("Secret/")], 60, "all gone"
    )


def run_0_4_script(kubeconfig: str, cluster: str, image: str) -> subprocess.CompletedProcess[str]:
    """A Clipper 0.4 script for KubernetesContainerManager, in a fresh process, `image` its only addition."""
    script = textwrap.dedent(
        f"""
        import time, requests
        from clipper_admin import ClipperConnection, KubernetesContainerManager
        from clipper_admin.deployers.python import deploy_python_closure

        clipper_conn = ClipperConnection(KubernetesContainerManager(
            cluster_name={cluster!r}, useInternalIP=True, image={image!r}))
        clipper_conn.start_clipper()
        clipper_conn.register_application(name="hello-world", input_type="doubles", default_output="-1.0",
                                          slo_micros=2000000)
        def feature_sum(xs):
            return [str(sum(x)) for x in xs]
        deploy_python_closure(clipper_conn, name="sum-model", version=1, input_type="doubles",
                              func=feature_sum)
        clipper_conn.link_model_to_app(app_name="hello-world", model_name="sum-model")
        addr = clipper_conn.get_query_addr()
        for _ in range(120):
            out = requests.post("http://%s/hello-world/predict" % addr, json={{"input": [1.1, 2.2, 3.3]}},
                                timeout=10).json()
            if not out["default"]:
                break
            time.sleep(0.25)
        print(out["output"])
        clipper_conn.stop_all()
        """
    )
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=110, check=False
    )


def test_contract_standin_clipper_0_4_script_runs_unchanged(standin: Standin, runtime_image: str) -> None:
    name = f"k-{uuid.uuid4().hex[:6]}"
    try:
        done = run_0_4_script(str(standin.kubeconfig), name, runtime_image)
    finally:
        remove_model_images(name)
    assert done.returncode == 0, done.stderr[-3000:]
    assert abs(float(done.stdout.strip().splitlines()[-1]) - 6.6) < 1e-9, done.stdout


@pytest.mark.kubernetes
def test_contract_real_cluster_end_to_end(runtime_image: str) -> None:
    """The 0.4 script against a real cluster named by CLIPPER_TEST_KUBECONFIG (images must be reachable)."""
    kubeconfig = os.environ.get("CLIPPER_TEST_KUBECONFIG")
    if not kubeconfig:
        reason = (
            "CLIPPER_TEST_KUBECONFIG is not set: no real Kubernetes cluster to run the end-to-end test on"
        )
        print(reason)
        pytest.skip(reason)
    image = os.environ.get("CLIPPER_TEST_KUBERNETES_IMAGE", runtime_image)
    name = f"k-{uuid.uuid4().hex[:6]}"
    try:
        done = run_0_4_script(kubeconfig, name, image)
    finally:
        remove_model_images(name)
    assert done.returncode == 0, done.stderr[-3000:]
    assert abs(float(done.stdout.strip().splitlines()[-1]) - 6.6) < 1e-9, done.stdout
