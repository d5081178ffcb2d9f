"""KubernetesReplicas against the stand-in API server (a fake with Docker-backed pods, see
standin_apiserver.py): the management frontend's Role exists with the cluster and goes with it, and the
control scales a model's Deployment, lists its pods and reads their logs through the manager's own calls."""

from __future__ import annotations

import uuid

import docker
import pytest
from kubernetes import client, config

from clipper.admin import images
from clipper.admin.clipper_images import ImageKind
from clipper.admin.connection import ClipperConnection
from clipper.admin.managers.kubernetes import KubernetesContainerManager
from clipper.admin.replica_control import KubernetesReplicas
from clipper.errors import ConfigConflict
from clipper.schema import Model
from tests.conftest import wait_until
from tests.kubernetes.conftest import Standin

pytestmark = pytest.mark.docker


def _model(name: str, image: str) -> Model:
    """A version-1 doubles model record, as the management frontend reads it from the store."""
    return Model(model_name=name, model_version="1", input_type="doubles", container_name=image)


def test_replica_control_scales_lists_and_tails_pods(
    standin_kubelet: Standin, docker_client: docker.DockerClient, runtime_image: str
) -> None:
    noop = images.ensure_clipper_image(docker_client, "clipper/noop-container:0.4.1", ImageKind.NOOP)
    name = f"k-{uuid.uuid4().hex[:6]}"
    kubeconfig = str(standin_kubelet.kubeconfig)
    manager = KubernetesContainerManager(
        name, image=runtime_image, kubeconfig=kubeconfig, rollout_timeout_s=90
    )
    conn = ClipperConnection(manager)
    conn.start_clipper()
    rbac = client.RbacAuthorizationV1Api(config.new_client_from_config(kubeconfig))
    try:
        assert [r.metadata.name for r in rbac.list_namespaced_role("default").items] == [
            f"{name}-clipper-mgmt"
        ]
        [binding] = rbac.list_namespaced_role_binding("default").items
        assert binding.subjects[0].name == f"{name}-clipper-mgmt"
        conn.deploy_model("m", "1", "doubles", noop)

        # As the management frontend builds it: a manager of the cluster's name, connected on first use.
        control = KubernetesReplicas(
            lambda: KubernetesContainerManager(name, kubeconfig=kubeconfig, rollout_timeout_s=90)
        )
        control.scale(_model("m", noop), 2)
        assert manager.get_num_replicas("m", "1") == 2
        pods = control.replicas("m", "1")
        assert len(pods) == 2 and all(p.kind == "pod" and p.state == "Running" for p in pods)
        assert all(p.started_at is not None and p.uptime_s is not None for p in pods)

        names = {p.replica for p in pods}
        wait_until(lambda: len({ln.split("]")[0][1:] for ln in control.log_lines("m", "1", 3)}) == 2, 30,
                   "both pods to log")  # fmt: skip
        lines = control.log_lines("m", "1", 3)
        assert {ln.split("]")[0][1:] for ln in lines} == names and len(lines) <= 6

        with pytest.raises(ConfigConflict, match="no Deployment"):
            control.scale(_model("absent", noop), 1)
        assert manager.model_deployment("absent", "1") is None
    finally:
        manager.stop_all(graceful=False, remove_state=True)
    assert rbac.list_namespaced_role("default").items == []
    assert rbac.list_namespaced_role_binding("default").items == []
