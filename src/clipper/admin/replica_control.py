"""ReplicaControl: how the management frontend scales a model version, lists its replicas, reads their logs.

The management frontend runs apart from the script that started the cluster (a process, a container, a pod),
so it builds the cluster's own container manager from what that manager put in its environment
(`ManagementFrontendSettings.replica_control` and friends) and calls the manager's `set_num_replicas`: the
one way each manager scales. One implementation per manager kind; `Unavailable` says why there is none.
Every method blocks (processes, the Docker SDK, the Kubernetes client): call it from a thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from clipper.errors import CannotManageReplicas, ClusterError, ConfigConflict
from clipper.schema import Model, ReplicaInfo
from clipper.settings import ManagementFrontendSettings

if TYPE_CHECKING:
    from clipper.admin.managers.base import ContainerManager
    from clipper.admin.managers.docker import DockerContainerManager
    from clipper.admin.managers.kubernetes import KubernetesContainerManager
    from clipper.admin.managers.local import LocalContainerManager

M = TypeVar("M", bound="ContainerManager")


class ReplicaControl(Protocol):
    """What the management API needs of a cluster's container manager."""

    def scale(self, model: Model, num_replicas: int) -> None:
        """Start or stop replicas of `model` until `num_replicas` run (the manager's own call)."""

    def replicas(self, name: str, version: str) -> list[ReplicaInfo]:
        """The version's replicas, oldest first where the manager knows."""

    def log_lines(self, name: str, version: str, lines: int) -> list[str]:
        """The last `lines` lines of each replica's log, each prefixed with `[<replica>] `."""


def _now() -> float:
    return time.time()  # noqa: TID251  # wall clock: start times are shown to people, not timed


def _info(replica: str, kind: str, started_at: float | None, state: str) -> ReplicaInfo:
    uptime = max(0.0, _now() - started_at) if started_at is not None else None
    return ReplicaInfo(replica=replica, kind=kind, started_at=started_at, uptime_s=uptime, state=state)


def _prefixed(replica: str, text: str, lines: int) -> list[str]:
    return [f"[{replica}] {line}" for line in text.splitlines()[-lines:]]


class Unavailable:
    """No way to act on this cluster's containers; every call says why and how to enable it (501)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _refuse(self) -> CannotManageReplicas:
        return CannotManageReplicas(self.reason)

    def scale(self, model: Model, num_replicas: int) -> None:
        raise self._refuse()

    def replicas(self, name: str, version: str) -> list[ReplicaInfo]:
        raise self._refuse()

    def log_lines(self, name: str, version: str, lines: int) -> list[str]:
        raise self._refuse()


def _scale(manager: ContainerManager, model: Model, num_replicas: int) -> None:
    """The manager's own set_num_replicas for `model`: new replicas get its type, image and shape."""
    manager.set_num_replicas(
        model.model_name,
        model.model_version,
        model.input_type,
        model.container_name,
        num_replicas,
        input_shape=model.input_shape,
    )


class LocalReplicas:
    """Replicas are processes of the cluster whose state directory this frontend shares (same machine)."""

    def __init__(self, manager: LocalContainerManager) -> None:
        self.manager = manager

    def scale(self, model: Model, num_replicas: int) -> None:
        _scale(self.manager, model, num_replicas)

    def replicas(self, name: str, version: str) -> list[ReplicaInfo]:
        return [
            _info(str(r.pid), "process", r.create_time, "running")
            for r in self.manager.replicas(name, version)
        ]

    def log_lines(self, name: str, version: str, lines: int) -> list[str]:
        from clipper.admin.managers.process import log_tail

        found: list[str] = []
        for r in self.manager.replicas(name, version):
            found += _prefixed(str(r.pid), log_tail(r.log_path, lines), lines)
        return found


class _ConnectedOnFirstUse(Generic[M]):
    """Holds the cluster's manager, built and connected (its cluster found) on first use, not at start:
    the frontend serves at once."""

    def __init__(self, build: Callable[[], M]) -> None:
        self._build = build
        self._manager: M | None = None
        self._lock = threading.Lock()

    @property
    def manager(self) -> M:
        with self._lock:
            if self._manager is None:
                manager = self._build()
                manager.connect()
                self._manager = manager
            return self._manager


class DockerReplicas(_ConnectedOnFirstUse["DockerContainerManager"]):
    """Replicas are containers on the engine whose socket the cluster mounted into this container."""

    def scale(self, model: Model, num_replicas: int) -> None:
        _scale(self.manager, model, num_replicas)

    def replicas(self, name: str, version: str) -> list[ReplicaInfo]:
        found = [
            _info(c.short_id, "container", _iso_seconds(c.attrs["State"].get("StartedAt")), c.status)
            for c in self.manager.model_containers(name, version)
        ]
        return sorted(found, key=lambda r: r.started_at or 0.0)

    def log_lines(self, name: str, version: str, lines: int) -> list[str]:
        found: list[str] = []
        for c in self.manager.model_containers(name, version):
            text = c.logs(tail=lines).decode(errors="replace")
            found += _prefixed(c.short_id, text, lines)
        return found


class KubernetesReplicas(_ConnectedOnFirstUse["KubernetesContainerManager"]):
    """Replicas are pods of the version's Deployment; this pod's ServiceAccount may scale it (its Role).
    Connecting reads the cluster's spec from its management Deployment."""

    def scale(self, model: Model, num_replicas: int) -> None:
        name, version = model.model_name, model.model_version
        if self.manager.model_deployment(name, version) is None:
            raise ConfigConflict(
                f"Model {name}:{version} has no Deployment in namespace {self.manager.namespace}; deploy it "
                "with ClipperConnection.deploy_model first (the management frontend may only scale)"
            )
        _scale(self.manager, model, num_replicas)

    def replicas(self, name: str, version: str) -> list[ReplicaInfo]:
        found = [
            _info(p.metadata.name, "pod", _timestamp(p.status.start_time), str(p.status.phase))
            for p in self.manager.model_pods(name, version)
        ]
        return sorted(found, key=lambda r: r.started_at or 0.0)

    def log_lines(self, name: str, version: str, lines: int) -> list[str]:
        api = self.manager.api
        found: list[str] = []
        for pod in self.manager.model_pods(name, version):
            pod_name = pod.metadata.name
            text = api.call(
                f"read the log of {pod_name}",
                api.core.read_namespaced_pod_log,
                pod_name,
                api.namespace,
                tail_lines=lines,
                missing_ok=True,
            )
            found += _prefixed(pod_name, str(text or ""), lines)
        return found


def _timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _iso_seconds(value: Any) -> float | None:
    """Docker's `2026-11-30T10:14:27.123456789Z` (nanoseconds: too fine for datetime) as epoch seconds."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]}+00:00").timestamp()


NOT_STARTED = (
    "This management frontend was started without access to the cluster's containers "
    "(CLIPPER_REPLICA_CONTROL is unset), so it cannot scale replicas or read their logs. Start the cluster "
    "with ClipperConnection.start_clipper(), whose manager sets it up: always for LocalContainerManager and "
    "KubernetesContainerManager, and for DockerContainerManager when it is created with "
    "mount_docker_socket=True. Meanwhile ClipperConnection.set_num_replicas works."
)


def replica_control(settings: ManagementFrontendSettings) -> ReplicaControl:
    """The control the manager that started this frontend asked for, or `Unavailable` saying why not."""
    kind = settings.replica_control
    if kind == "none":
        return Unavailable(NOT_STARTED)
    if kind == "local":
        from clipper.admin.managers.local import LocalContainerManager

        if settings.state_dir is None:
            return Unavailable(
                "CLIPPER_REPLICA_CONTROL=local needs CLIPPER_STATE_DIR, the cluster's state dir."
            )
        return LocalReplicas(LocalContainerManager(settings.cluster_name, state_dir=settings.state_dir))
    if kind == "docker":
        return _docker(settings)
    return _kubernetes(settings)


def _docker(settings: ManagementFrontendSettings) -> ReplicaControl:
    def build() -> DockerContainerManager:
        try:
            from docker.errors import DockerException

            from clipper.admin.managers.docker import DockerContainerManager
        except ModuleNotFoundError as e:
            raise CannotManageReplicas(
                f"Acting on Docker needs the '{e.name}' package in this image"
            ) from None
        try:
            return DockerContainerManager(settings.cluster_name, state_dir=settings.state_dir)
        except DockerException as e:
            raise CannotManageReplicas(
                f"No Docker engine answers here ({e}); create the DockerContainerManager with "
                "mount_docker_socket=True and start the cluster again"
            ) from None

    return DockerReplicas(build)


def _kubernetes(settings: ManagementFrontendSettings) -> ReplicaControl:
    def build() -> KubernetesContainerManager:
        try:
            from clipper.admin.managers.kubernetes import KubernetesContainerManager
        except ModuleNotFoundError as e:
            raise CannotManageReplicas(
                f"Acting on Kubernetes needs the '{e.name}' package in this image"
            ) from None
        try:
            return KubernetesContainerManager(settings.cluster_name, namespace=settings.namespace)
        except ClusterError as e:
            raise CannotManageReplicas(f"No Kubernetes credentials here: {e}") from None

    return KubernetesReplicas(build)
