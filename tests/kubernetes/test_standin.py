"""The stand-in Kubernetes API server's own behaviour, through the real `kubernetes` client and a kubeconfig.

The stand-in is a fake (no real API server can run here); these tests pin down the parts of the API the
Kubernetes manager relies on, so that a manager passing on the stand-in is wired as it would be on a cluster.
"""

from __future__ import annotations

import json
import os
from typing import Any

import docker
import pytest
import requests
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.conftest import wait_until
from tests.kubernetes.conftest import Standin
from tests.kubernetes.standin_apiserver import STANDIN_LABEL, parse_selector

MERGE = "application/merge-patch+json"


def status_body(error: ApiException) -> dict[str, Any]:
    body = json.loads(error.body)
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == error.status
    return body


def secret(name: str, labels: dict[str, str], **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "stringData": data}


def web_deployment(name: str, image: str, replicas: int = 1, **container: Any) -> dict[str, Any]:
    """A Deployment of `image` whose pods serve their own name over HTTP on $(POD_IP):8080 once ready."""
    labels = {"app": name}
    spec = {
        "name": "web",
        "image": image,
        "command": ["sh", "-c"],
        "args": [
            "mkdir -p /tmp/w && echo $(POD_NAME) > /tmp/w/name && cp /run/secrets/web/greeting /tmp/w/ && "
            "exec python -m http.server --bind $(POD_IP) --directory /tmp/w 8080"
        ],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/name", "port": "http"}, "periodSeconds": 1},
        "volumeMounts": [{"name": "secret", "mountPath": "/run/secrets/web", "readOnly": True}],
        **container,
    }
    volume = {
        "name": "secret",
        "secret": {"secretName": "web", "items": [{"key": "greeting", "path": "greeting"}]},
    }
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [spec], "volumes": [volume], "terminationGracePeriodSeconds": 2},
            },
        },
    }


def pods_of(standin: Standin, app: str) -> list[client.V1Pod]:
    return list(standin.core.list_namespaced_pod("default", label_selector=f"app={app}").items)


# ----- REST semantics (no Docker) -----


def test_standin_kubeconfig_is_required_and_used(standin_api: Standin) -> None:
    """KUBECONFIG names the stand-in; a client without its token is refused with 401."""
    config.load_kube_config(os.environ["KUBECONFIG"])  # the default path is read once, at import
    assert client.CoreV1Api().read_namespace("default").metadata.name == "default"
    anonymous = client.Configuration()
    anonymous.host = standin_api.server.url
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(client.ApiClient(anonymous)).list_namespace()
    assert refused.value.status == 401


def test_standin_crud_with_label_selectors(standin_api: Standin) -> None:
    core = standin_api.core
    core.create_namespaced_secret("default", secret("a", {"role": "frontend", "cluster": "one"}, k="1"))
    core.create_namespaced_secret("default", secret("b", {"role": "model", "cluster": "one"}, k="2"))
    core.create_namespaced_secret("default", secret("c", {"role": "model", "cluster": "two"}, k="3"))

    def names(selector: str) -> list[str]:
        return [
            s.metadata.name for s in core.list_namespaced_secret("default", label_selector=selector).items
        ]

    assert names("cluster=one") == ["a", "b"]
    assert names("cluster==one,role!=frontend") == ["b"]
    assert names("role in (model,other),cluster notin (one)") == ["c"]
    assert names("cluster,!missing") == ["a", "b", "c"]
    assert core.read_namespaced_secret("b", "default").data == {"k": "Mg=="}

    current = core.read_namespaced_secret("b", "default")
    current.metadata.labels["role"] = "frontend"
    replaced = core.replace_namespaced_secret("b", "default", current)
    assert int(replaced.metadata.resource_version) > int(current.metadata.resource_version)
    assert names("role=frontend") == ["a", "b"]

    core.patch_namespaced_secret(
        "c", "default", {"metadata": {"labels": {"role": None}}}, _content_type=MERGE
    )
    assert names("!role") == ["c"]

    core.delete_namespaced_secret("a", "default")
    assert names("cluster") == ["b", "c"]
    core.delete_collection_namespaced_secret("default", label_selector="cluster=one")
    assert names("cluster") == ["c"]


def test_standin_stale_resource_version_is_a_conflict(standin_api: Standin) -> None:
    core = standin_api.core
    core.create_namespaced_secret("default", secret("s", {"v": "1"}, k="x"))
    first = core.read_namespaced_secret("s", "default")
    second = core.read_namespaced_secret("s", "default")
    first.metadata.labels["v"] = "2"
    core.replace_namespaced_secret("s", "default", first)
    second.metadata.labels["v"] = "3"
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_secret("s", "default", second)
    body = status_body(stale.value)
    assert (stale.value.status, body["reason"]) == (409, "Conflict")
    assert 'secrets "s"' in body["message"] and "has been modified" in body["message"]
    stale_patch = {"metadata": {"resourceVersion": second.metadata.resource_version, "labels": {"v": "4"}}}
    with pytest.raises(ApiException) as stale_patched:
        core.patch_namespaced_secret("s", "default", stale_patch, _content_type=MERGE)
    assert stale_patched.value.status == 409
    assert core.read_namespaced_secret("s", "default").metadata.labels == {"v": "2"}


def test_standin_status_bodies_for_not_found_already_exists_and_invalid(standin_api: Standin) -> None:
    core, apps = standin_api.core, standin_api.apps
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("nope", "default")
    body = status_body(missing.value)
    assert (body["reason"], body["message"]) == ("NotFound", 'deployments.apps "nope" not found')
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}

    core.create_namespaced_service_account("default", {"metadata": {"name": "sa"}})
    with pytest.raises(ApiException) as duplicate:
        core.create_namespaced_service_account("default", {"metadata": {"name": "sa"}})
    assert status_body(duplicate.value)["reason"] == "AlreadyExists"

    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_secret("elsewhere", secret("s", {}, k="v"))
    assert status_body(no_namespace.value)["message"] == 'namespaces "elsewhere" not found'

    with pytest.raises(ApiException) as bad_label:
        core.create_namespaced_secret("default", secret("s", {"app": "has space"}, k="v"))
    body = status_body(bad_label.value)
    assert (bad_label.value.status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.labels"
    assert core.list_namespaced_secret("default").items == []


def test_standin_selector_parser_rejects_garbage() -> None:
    with pytest.raises(Exception, match="unable to parse"):
        parse_selector("a in b c")


def test_standin_deployment_makes_replicasets_and_pods_and_scales(standin_api: Standin) -> None:
    """Without a kubelet pods stay Pending, but the controller still names, owns, scales and deletes them."""
    apps = standin_api.apps
    apps.create_namespaced_deployment("default", web_deployment("web", "absent:1", replicas=2))
    wait_until(lambda: len(pods_of(standin_api, "web")) == 2, 10, "two pods")
    rs = apps.list_namespaced_replica_set("default", label_selector="app=web").items
    assert len(rs) == 1 and rs[0].metadata.owner_references[0].kind == "Deployment"
    for pod in pods_of(standin_api, "web"):
        assert pod.metadata.name.startswith(f"{rs[0].metadata.name}-")
        assert pod.metadata.owner_references[0].name == rs[0].metadata.name
        assert pod.status.phase == "Pending"

    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}}, _content_type=MERGE)
    wait_until(lambda: len(pods_of(standin_api, "web")) == 3, 10, "three pods")
    dep = apps.read_namespaced_deployment("web", "default")
    assert (dep.metadata.generation, dep.spec.replicas) == (2, 3)
    wait_until(
        lambda: apps.read_namespaced_deployment("web", "default").status.observed_generation == 2,
        10,
        "observed",
    )
    assert apps.read_namespaced_deployment("web", "default").status.ready_replicas is None

    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 1}}, _content_type=MERGE)
    wait_until(lambda: len(pods_of(standin_api, "web")) == 1, 10, "one pod")
    assert apps.read_namespaced_deployment_scale("web", "default").spec.replicas == 1

    apps.delete_namespaced_deployment("web", "default", propagation_policy="Foreground")
    wait_until(lambda: not pods_of(standin_api, "web"), 10, "pods deleted with their deployment")
    assert apps.list_namespaced_replica_set("default").items == []


def test_standin_deployment_selector_must_match_template(standin_api: Standin) -> None:
    body = web_deployment("web", "absent:1")
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(ApiException) as refused:
        standin_api.apps.create_namespaced_deployment("default", body)
    assert status_body(refused.value)["details"]["causes"][0]["field"] == "spec.template.metadata.labels"


def test_standin_watch_streams_changes(standin_api: Standin) -> None:
    core = standin_api.core
    listed = core.list_namespaced_secret("default")
    core.create_namespaced_secret("default", secret("w", {"x": "1"}, k="v"))
    core.patch_namespaced_secret("w", "default", {"metadata": {"labels": {"x": "2"}}}, _content_type=MERGE)
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_secret,
        "default",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=5,
    ):
        seen.append((event["type"], event["object"].metadata.labels["x"]))
        if len(seen) == 2:
            break
    assert seen == [("ADDED", "1"), ("MODIFIED", "2")]


def test_standin_services_get_cluster_ip_and_node_port(standin_api: Standin) -> None:
    core = standin_api.core
    body = {
        "metadata": {"name": "q"},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "q"},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    }
    svc = core.create_namespaced_service("default", body)
    assert svc.spec.cluster_ip.startswith("127.20.")
    assert 30000 <= svc.spec.ports[0].node_port <= 32767
    assert svc.status.load_balancer.ingress[0].ip == "127.0.0.1"
    with pytest.raises(ApiException) as bad_type:
        core.create_namespaced_service("default", {**body, "spec": {**body["spec"], "type": "Bogus"}})
    assert status_body(bad_type.value)["details"]["causes"][0]["field"] == "spec.type"


# ----- pods as Docker containers -----


@pytest.mark.docker
def test_standin_deployment_pods_become_ready_and_serve_through_a_service(
    standin_kubelet: Standin, runtime_image: str, docker_client: docker.DockerClient
) -> None:
    core, apps = standin_kubelet.core, standin_kubelet.apps
    core.create_namespaced_secret("default", secret("web", {}, greeting="hello", other="not mounted"))
    service = {
        "metadata": {"name": "web"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": "http"}],
        },
    }
    svc = core.create_namespaced_service("default", service)
    apps.create_namespaced_deployment("default", web_deployment("web", runtime_image, replicas=2))
    wait_until(
        lambda: apps.read_namespaced_deployment("web", "default").status.ready_replicas == 2,
        30,
        "2 ready pods",
    )
    pods = pods_of(standin_kubelet, "web")
    assert {p.status.pod_ip.rsplit(".", 2)[0] for p in pods} == {"127.10"}
    assert all(p.status.container_statuses[0].ready for p in pods)

    node = f"http://127.0.0.1:{svc.spec.ports[0].node_port}"
    served = {requests.get(f"{node}/name", timeout=5).text.strip() for _ in range(4)}
    assert served == {p.metadata.name for p in pods}  # round robin over both ready pods
    assert requests.get(f"http://{svc.spec.cluster_ip}/greeting", timeout=5).text.strip() == "hello"

    container = docker_client.containers.list(filters={"label": STANDIN_LABEL})[0]
    inside = container.exec_run(
        ["python", "-c", "import urllib.request as u; print(u.urlopen('http://web/name').read().decode())"]
    )
    assert inside.exit_code == 0 and inside.output.decode().strip() in served
    listing = container.exec_run(["ls", "/run/secrets/web"]).output.decode().split()
    assert listing == ["greeting"]  # only the selected item
    assert "GET /name" in core.read_namespaced_pod_log(pods[0].metadata.name, "default")

    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 1}}, _content_type=MERGE)
    wait_until(lambda: len(pods_of(standin_kubelet, "web")) == 1, 30, "scaled down to one pod")
    (left,) = pods_of(standin_kubelet, "web")
    assert {requests.get(f"{node}/name", timeout=5).text.strip() for _ in range(3)} == {left.metadata.name}


@pytest.mark.docker
def test_standin_missing_image_is_image_pull_back_off(standin_kubelet: Standin) -> None:
    standin_kubelet.core.create_namespaced_secret("default", secret("web", {}, greeting="hi"))
    standin_kubelet.apps.create_namespaced_deployment(
        "default", web_deployment("web", "clipper/absent:0.0.0")
    )

    def reason() -> str | None:
        pods = pods_of(standin_kubelet, "web")
        statuses = pods[0].status.container_statuses if pods else None
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.reason if waiting else None

    wait_until(lambda: reason() == "ErrImagePull", 10, "ErrImagePull")
    wait_until(lambda: reason() == "ImagePullBackOff", 10, "ImagePullBackOff")
    assert not standin_kubelet.apps.read_namespaced_deployment("web", "default").status.ready_replicas


@pytest.mark.docker
def test_standin_crashing_container_is_crash_loop_back_off(
    standin_kubelet: Standin, runtime_image: str
) -> None:
    standin_kubelet.core.create_namespaced_secret("default", secret("web", {}, greeting="hi"))
    body = web_deployment("crash", runtime_image, args=["echo boom-$(POD_NAME); exit 3"])
    standin_kubelet.apps.create_namespaced_deployment("default", body)

    def status() -> client.V1ContainerStatus | None:
        pods = pods_of(standin_kubelet, "crash")
        return pods[0].status.container_statuses[0] if pods and pods[0].status.container_statuses else None

    wait_until(lambda: (s := status()) is not None and s.restart_count >= 2, 20, "two restarts")
    wait_until(lambda: (s := status()) is not None and s.state.waiting is not None, 10, "waiting")
    current = status()
    assert current is not None and current.state.waiting.reason == "CrashLoopBackOff"
    assert current.last_state.terminated.exit_code == 3
    (pod,) = pods_of(standin_kubelet, "crash")
    assert standin_kubelet.core.read_namespaced_pod_log(pod.metadata.name, "default").strip() == (
        f"boom-{pod.metadata.name}"
    )


@pytest.mark.docker
def test_standin_statefulset_claim_survives_pod_deletion(
    standin_kubelet: Standin, runtime_image: str
) -> None:
    labels = {"app": "store"}
    container = {
        "name": "store",
        "image": runtime_image,
        "command": ["sh", "-c", "echo boot >> /data/boots && wc -l < /data/boots && exec sleep 600"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    body = {
        "metadata": {"name": "store"},
        "spec": {
            "serviceName": "store",
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 1},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
        },
    }
    core = standin_kubelet.core
    standin_kubelet.apps.create_namespaced_stateful_set("default", body)

    def log() -> str:
        try:
            return str(core.read_namespaced_pod_log("store-0", "default")).strip()
        except ApiException:
            return ""

    wait_until(lambda: log() == "1", 20, "first boot")
    assert core.read_namespaced_persistent_volume_claim("data-store-0", "default").status.phase == "Bound"
    first_uid = core.read_namespaced_pod("store-0", "default").metadata.uid
    core.delete_namespaced_pod("store-0", "default")

    def replaced() -> bool:
        try:
            return core.read_namespaced_pod("store-0", "default").metadata.uid != first_uid
        except ApiException:
            return False

    wait_until(replaced, 20, "a new store-0")
    wait_until(lambda: log() == "2", 20, "second boot sees the first one's file")
