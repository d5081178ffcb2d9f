"""Talking to the Docker engine: run, wait for, remove and log containers; networks, volumes and Redis.

Nothing here knows what a Clipper cluster is; DockerContainerManager decides names, labels and ports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import docker.errors
import requests
from docker import DockerClient
from docker.models.containers import Container

from clipper.errors import ClusterError

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10


def run_container(
    client: DockerClient,
    image: str,
    command: list[str] | None,
    network: str | None,
    publish: dict[int, int] | None = None,
    **kwargs: Any,
) -> Container:
    """Start a detached container under tini; `network=None` means host networking (nothing published).

    On a user-defined network, `publish` maps container ports to ports on the host's 127.0.0.1.
    """
    run_kwargs: dict[str, Any] = {**kwargs, "detach": True, "init": True}  # tini reaps and forwards signals
    if network is None:
        run_kwargs["network_mode"] = "host"
    else:
        run_kwargs["network"] = network
        run_kwargs["ports"] = {f"{c}/tcp": ("127.0.0.1", h) for c, h in (publish or {}).items()}
    name = run_kwargs.get("name")
    logger.info("Starting container %s (%s)", name, image)
    try:
        return client.containers.run(image, command, **run_kwargs)
    except docker.errors.APIError as e:
        raise ClusterError(f"Cannot start container {name} from {image}: {e.explanation or e}") from e


def check_not_exited(c: Container) -> str:
    """The container's fresh status; raise with its log tail if it has exited."""
    c.reload()
    if c.status in ("exited", "dead"):
        tail = c.logs(tail=30).decode(errors="replace")
        raise ClusterError(f"Container {c.name} exited at start:\n{tail}")
    return str(c.status)


def wait_running(containers: Iterable[Container], timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until every container runs; fail fast with its log tail when one exits."""
    pending = list(containers)
    deadline = time.monotonic() + timeout_s
    while pending:
        for c in list(pending):
            if check_not_exited(c) == "running":
                pending.remove(c)
        if pending and time.monotonic() > deadline:
            names = ", ".join(c.name for c in pending)
            raise ClusterError(f"Containers not running after {timeout_s:.0f} s: {names}")
        if pending:
            time.sleep(0.2)


def ensure_network(client: DockerClient, network: str, labels: dict[str, str]) -> None:
    """Create the bridge network `network` unless it exists."""
    if not client.networks.list(names=[network]):
        client.networks.create(network, driver="bridge", labels=labels)


def remove_containers(
    containers: Iterable[Container], graceful: bool = True, stop_timeout_s: int = STOP_TIMEOUT_S
) -> None:
    """Stop (unless not `graceful`) and remove the containers, then wait until they are gone."""
    containers = list(containers)
    for c in containers:
        try:
            if graceful and c.status == "running":
                c.stop(timeout=stop_timeout_s)
            c.remove(force=True)
        except docker.errors.NotFound:
            continue
    for c in containers:
        try:
            c.wait(condition="removed", timeout=STOP_TIMEOUT_S * 3)
        except (docker.errors.NotFound, docker.errors.APIError):
            continue


def remove_networks(client: DockerClient, label: str) -> None:
    """Remove every network carrying the label filter `label` (`key=value`)."""
    for network in client.networks.list(filters={"label": label}):
        network.remove()


def remove_volume(client: DockerClient, name: str) -> None:
    """Remove the volume `name` if it exists."""
    try:
        client.volumes.get(name).remove(force=True)
    except docker.errors.NotFound:
        return


def write_logs(containers: Iterable[Container], logging_dir: str) -> list[str]:
    """One file per container: `image_<id>:container_<id>.log` (stdout and stderr); return the paths."""
    out = Path(logging_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in containers:
        path = out / f"image_{c.image.short_id.removeprefix('sha256:')}:container_{c.short_id}.log"
        path.write_bytes(c.logs(stdout=True, stderr=True))
        paths.append(str(path))
    return paths


def wait_answering(
    url: str, id_field: str, waiting: dict[str, Container], what: str, timeout_s: float = START_TIMEOUT_S
) -> None:
    """GET `url` on a new connection each time until each container of `waiting` has answered 200 with
    its key as `id_field`; fail fast when one exits. `what` names the containers in the error."""
    deadline = time.monotonic() + timeout_s
    while waiting:
        try:
            with requests.Session() as session:
                answer = session.get(url, timeout=2)
            if answer.status_code == 200:
                waiting.pop(answer.json().get(id_field), None)
        except (requests.RequestException, ValueError):
            pass
        if waiting and time.monotonic() > deadline:
            raise ClusterError(f"{what} not serving after {timeout_s:.0f} s: {sorted(waiting)}")
        if waiting:
            for c in waiting.values():
                check_not_exited(c)
            time.sleep(0.05)
