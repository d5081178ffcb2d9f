"""Prometheus for a Docker cluster: the `clipper/prometheus:<version>` image and its container.

Host networking only: there each query frontend registers an address this host reaches (on a bridge network
they register 0.0.0.0, which no scraper can use). Tokens are read from the cluster's secrets directory,
mounted read-only as the frontends get it; the config is mounted read-only from the state directory.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import requests

import clipper
from clipper.admin import images
from clipper.admin.managers import prometheus
from clipper.admin.managers.base import CLIPPER_NAME_LABEL
from clipper.admin.managers.docker_engine import START_TIMEOUT_S, check_not_exited
from clipper.admin.managers.process import choose_port
from clipper.errors import ClusterError

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

    from clipper.admin.managers.docker import DockerContainerManager

logger = logging.getLogger(__name__)

ROLE = "prometheus"
PORT_LABEL = "ai.clipper.prometheus.port"
CONFIG_MOUNT = "/etc/clipper-prometheus"
DATA_DIR = "/var/lib/prometheus/clipper"  # inside the container: the series go with it


def image_tag() -> str:
    return f"{prometheus.IMAGE_NAME}:{clipper.__version__}"


def ensure_image(client: DockerClient) -> str:
    """The Prometheus image of this clipper version, built from dockerfiles/prometheus.Dockerfile first
    when the engine does not have it (apt-get inside the build: a minute or two, once)."""
    tag = image_tag()
    if images.image_exists(client, tag):
        return tag
    if not images.image_exists(client, images.BASE_IMAGE):
        raise ClusterError(f"Base image {images.BASE_IMAGE} is missing; run scripts/base-image.sh first.")
    text = (images.project_dir() / "dockerfiles" / "prometheus.Dockerfile").read_text()
    text = text.replace("ARG BASE_IMAGE=clipper/base:bookworm", f"ARG BASE_IMAGE={images.BASE_IMAGE}")
    images.build_from_dockerfile(client, text, tag)
    return tag


def start(manager: DockerContainerManager, scrape_interval_s: float) -> None:
    """Run the cluster's Prometheus on `manager.prometheus_port` and wait until it is ready."""
    if not manager.host_network:
        logger.warning(
            "Prometheus skipped for cluster %s: it needs host networking (network_mode='host'); on a "
            "bridge network scrape each query frontend's /metrics yourself",
            manager.cluster_name,
        )
        return
    port = choose_port(manager.prometheus_port, set(manager.ports.values()), ROLE)
    listen_host = manager.public_hostname if manager.public_hostname == "127.0.0.1" else "0.0.0.0"
    listen = f"{listen_host}:{port}"
    from clipper.admin.managers.docker import SECRETS_MOUNT  # here: docker.py imports this module

    admin_token, query_token = prometheus.token_files(manager.secrets, SECRETS_MOUNT)
    plan = prometheus.PrometheusPlan(
        management_address=f"127.0.0.1:{manager.ports['management']}",
        listen_address=listen,
        scrape_interval_s=scrape_interval_s,
        admin_token_file=admin_token,
        query_token_file=query_token,
    )
    directory = manager.state_dir / ROLE
    prometheus.write_config(plan, directory)
    container = manager._run(
        ensure_image(manager.client),
        manager._name(ROLE),
        manager._labels(ROLE, **{PORT_LABEL: str(port)}),
        {},
        prometheus.prometheus_args(f"{CONFIG_MOUNT}/prometheus.yml", DATA_DIR, listen),
        volumes={
            str(directory): {"bind": CONFIG_MOUNT, "mode": "ro"},
            **manager._secrets_volume(),
        },
    )
    _wait_ready(container, f"http://{manager.public_hostname}:{port}/-/ready")
    logger.info(
        "Prometheus of cluster %s on http://%s:%d", manager.cluster_name, manager.public_hostname, port
    )


def _wait_ready(container: Container, url: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        check_not_exited(container)
        if time.monotonic() > deadline:
            raise ClusterError(f"Prometheus not ready at {url} after {timeout_s:.0f} s")
        time.sleep(0.1)


def address(manager: DockerContainerManager) -> str | None:
    """host:port of the cluster's running Prometheus, or None when it has none."""
    running = manager._containers(f"{CLIPPER_NAME_LABEL}={ROLE}", all_states=False)
    if not running:
        return None
    return f"{manager.public_hostname}:{running[0].labels[PORT_LABEL]}"
