"""Fixtures for the Kubernetes tests: the stand-in API server (a fake, see standin_apiserver.py), a
kubeconfig pointing at it in KUBECONFIG, and clients of it built from that file."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from kubernetes import client, config

from clipper.admin.managers.kubernetes import KubernetesContainerManager
from tests.admin.conftest import docker_client, runtime_image
from tests.kubernetes.standin_apiserver import StandinApiServer

__all__ = ["Standin", "docker_client", "running_standin", "runtime_image"]


@dataclass
class Standin:
    """A running stand-in, the kubeconfig written for it, and clients built from that kubeconfig."""

    server: StandinApiServer
    kubeconfig: Path
    core: client.CoreV1Api
    apps: client.AppsV1Api


@contextmanager
def running_standin(root: Path, docker_client: docker.DockerClient | None) -> Iterator[Standin]:
    """Start a stand-in under `root` with KUBECONFIG naming its kubeconfig; stop it and restore KUBECONFIG
    afterwards, whatever the test did (containers, proxies and temp files go too)."""
    root.mkdir(parents=True, exist_ok=True)
    server = StandinApiServer(root / "standin", docker_client)
    server.start()
    try:
        kubeconfig = server.write_kubeconfig(root / "kubeconfig")
        api = config.new_client_from_config(str(kubeconfig))
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KUBECONFIG", str(kubeconfig))
            yield Standin(server, kubeconfig, client.CoreV1Api(api), client.AppsV1Api(api))
    finally:
        server.stop()


def standin_manager(standin: Standin, image: str) -> KubernetesContainerManager:
    """A manager of a fresh cluster on `standin`, every role on `image`; 90 s per rollout (pods are Docker
    containers on shared cores)."""
    return KubernetesContainerManager(
        cluster_name=f"k-{uuid.uuid4().hex[:6]}",
        image=image,
        kubeconfig=str(standin.kubeconfig),
        rollout_timeout_s=90,
    )


@pytest.fixture
def standin_api(tmp_path: Path) -> Iterator[Standin]:
    """The stand-in without a kubelet (pods stay Pending): the API's REST semantics only, no Docker."""
    with running_standin(tmp_path, None) as standin:
        yield standin


@pytest.fixture
def standin_kubelet(tmp_path: Path, docker_client: docker.DockerClient) -> Iterator[Standin]:
    """The stand-in whose kubelet runs pods as Docker containers on the host network."""
    with running_standin(tmp_path, docker_client) as standin:
        yield standin
