"""ContainerManager: the one interface every manager (local, docker, kubernetes) implements.

A manager only starts, stops, scales and reports processes or containers; it never touches query logic.
Method names and arguments are Clipper 0.4's (reference §7.3) so a Clipper user's subclass still fits.
"""

from __future__ import annotations

import abc
from pathlib import Path

from clipper.admin.exceptions import ClipperException
from clipper.admin.managers.secrets import AUTH_TOKEN, QUERY_TOKEN
from clipper.settings import AdminClientSettings, reveal

# Ports inside a cluster, as Clipper fixes them.
CLIPPER_INTERNAL_QUERY_PORT = 1337
CLIPPER_INTERNAL_MANAGEMENT_PORT = 1338
CLIPPER_INTERNAL_RPC_PORT = 7000
CLIPPER_INTERNAL_METRIC_PORT = 1390
CLIPPER_INTERNAL_REDIS_PORT = 6379

# Labels Clipper puts on containers; our managers use the same ones.
CLIPPER_DOCKER_LABEL = "ai.clipper.container.label"
CLIPPER_NAME_LABEL = "ai.clipper.name"
CLIPPER_MODEL_CONTAINER_LABEL = "ai.clipper.model_container.label"
CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL = "ai.clipper.query_frontend.label"
CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL = "ai.clipper.management_frontend.label"
CLIPPER_QUERY_FRONTEND_ID_LABEL = "ai.clipper.query_frontend.id"
CLIPPER_DOCKER_PORT_LABELS = {
    "redis": "ai.clipper.redis.port",
    "query_rest": "ai.clipper.query_frontend.query.port",
    "query_rpc": "ai.clipper.query_frontend.rpc.port",
    "management": "ai.clipper.management.port",
    "metric": "ai.clipper.metric.port",
}


def model_container_label(name: str, version: str) -> str:
    """Value of the model-container label: `<name>_<version>`."""
    return f"{name}_{version}"


class ContainerManager(abc.ABC):
    """Runs a cluster's Redis, frontends and model replicas somewhere; Clipper 0.4's interface."""

    cluster_name: str
    # Clipper's flag: logs go to a fluentd container (get_logs then has nothing to copy). Ours never do.
    centralize_log: bool = False

    @property
    def cluster_identifier(self) -> str:
        return self.cluster_name

    @abc.abstractmethod
    def start_clipper(
        self,
        query_frontend_image: str,
        mgmt_frontend_image: str,
        frontend_exporter_image: str,
        cache_size: int,
        qf_http_thread_pool_size: int,
        qf_http_timeout_request: int,
        qf_http_timeout_content: int,
        num_frontend_replicas: int = 1,
    ) -> None:
        """Start Redis (unless given), the management frontend and the query frontend(s)."""

    @abc.abstractmethod
    def connect(self) -> None:
        """Find a running cluster of this name and remember its addresses."""

    def deploy_model(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str,
        num_replicas: int = 1,
        *,
        input_shape: list[int] | None = None,
    ) -> None:
        """Start `num_replicas` containers of one model version (`input_shape`: CLIPPER_INPUT_SHAPE).

        As in Clipper, deploying is `set_num_replicas`; a manager overrides it only to check more first.
        """
        self.set_num_replicas(name, version, input_type, image, num_replicas, input_shape=input_shape)

    @abc.abstractmethod
    def get_num_replicas(self, name: str, version: str) -> int:
        """How many containers of this model version are running."""

    @abc.abstractmethod
    def set_num_replicas(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str,
        num_replicas: int,
        *,
        input_shape: list[int] | None = None,
    ) -> None:
        """Start or stop containers until `num_replicas` run (new ones get `input_shape`)."""

    @abc.abstractmethod
    def get_logs(self, logging_dir: str) -> list[str]:
        """Write each process's or container's log into `logging_dir`; return the file paths."""

    @abc.abstractmethod
    def stop_models(self, models: dict[str, list[str]]) -> None:
        """Stop the containers of the given `{name: [versions]}`."""

    @abc.abstractmethod
    def stop_all_model_containers(self) -> None:
        """Stop every model container of this cluster."""

    @abc.abstractmethod
    def stop_all(self, graceful: bool = True, remove_state: bool = False) -> None:
        """Stop everything this cluster runs (a Redis the user gave is left alone).

        `remove_state` also deletes what the cluster kept (config store data, models, secrets), so the next
        start begins from nothing.
        """

    def resumed_replicas(self) -> dict[tuple[str, str], int]:
        """(model, version) -> replicas that the last `start_clipper` started again, as before a stop."""
        return {}

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """Build (and push) the image `[<registry>/]<cluster>-<name>:<version>`; return its name."""
        raise ClipperException(
            f"{type(self).__name__} cannot build images: building a model image needs "
            "DockerContainerManager. With LocalContainerManager, pass the model directory as `image` "
            "to deploy_model, or use clipper.admin.deployers.python.deploy_python_closure."
        )

    def model_directory(self, name: str, version: str) -> Path | None:
        """A directory replicas can load a model version from directly, or None: the model needs an image."""
        return None

    def check_model_replicas(self, name: str, version: str) -> None:
        """Raise a ClusterError if the version's replicas have all died (managers that can tell)."""
        return None

    def get_num_frontends(self) -> int:
        """How many query frontends run (managers that cannot scale them run one)."""
        return 1

    def set_num_frontends(self, num_frontends: int) -> None:
        """Start or stop query frontends; containers follow without restarting."""
        from clipper.errors import ClusterError

        raise ClusterError(f"{type(self).__name__} cannot change the number of query frontends")

    def cluster_secret(self, name: str) -> str | None:
        """The cluster's own secret `name` (secrets.AUTH_TOKEN, ...), for managers that can read where the
        cluster keeps them; None here."""
        return None

    def get_admin_token(self) -> str | None:
        """Bearer token for the management API: the cluster's own, else CLIPPER_AUTH_TOKEN (or its file in
        CLIPPER_SECRETS_DIR)."""
        return self.cluster_secret(AUTH_TOKEN) or reveal(AdminClientSettings().auth_token)

    def get_query_token(self) -> str | None:
        """Bearer token for predict requests, when the cluster requires one: its own, else
        CLIPPER_QUERY_TOKEN."""
        return self.cluster_secret(QUERY_TOKEN) or reveal(AdminClientSettings().query_token)

    @abc.abstractmethod
    def get_admin_addr(self) -> str:
        """`host:port` of the management frontend."""

    @abc.abstractmethod
    def get_query_addr(self) -> str:
        """`host:port` of the query frontend(s)."""

    @abc.abstractmethod
    def get_metric_addr(self) -> str:
        """`host:port` where Prometheus-format metrics are served."""


def input_shape_env(input_shape: list[int] | None) -> dict[str, str]:
    """`CLIPPER_INPUT_SHAPE` for a replica of a shaped model (`28,28`); nothing for an unshaped one."""
    return {} if input_shape is None else {"CLIPPER_INPUT_SHAPE": ",".join(map(str, input_shape))}
