"""DockerContainerManager: a cluster's Redis, frontends and model replicas as containers on the local engine.

Clipper 0.4's constructor and labels; containers are found again from their labels only, so `connect()`
works from any process. Host networking is the default here (the engine may have no bridge); with a
user-defined network, containers reach each other by name and ports are published on 127.0.0.1.
Secrets are files in a host directory (`$CLIPPER_HOME/docker/<cluster>/secrets`, 0700, files 0600)
bind-mounted read-only at /run/secrets/clipper: frontends get the directory, model containers only
`rpc_token`, Redis only its config file. No value is in a container's environment, command or labels.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import redis
from docker import DockerClient
from docker.models.containers import Container
from pydantic import TypeAdapter

from clipper.admin import clipper_images, images
from clipper.admin.exceptions import ClipperException
from clipper.admin.managers import prometheus_docker
from clipper.admin.managers.base import (
    CLIPPER_DOCKER_LABEL,
    CLIPPER_DOCKER_PORT_LABELS,
    CLIPPER_INTERNAL_MANAGEMENT_PORT,
    CLIPPER_INTERNAL_QUERY_PORT,
    CLIPPER_INTERNAL_REDIS_PORT,
    CLIPPER_INTERNAL_RPC_PORT,
    CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL,
    CLIPPER_MODEL_CONTAINER_LABEL,
    CLIPPER_NAME_LABEL,
    CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL,
    CLIPPER_QUERY_FRONTEND_ID_LABEL,
    ContainerManager,
    input_shape_env,
    model_container_label,
)
from clipper.admin.managers.docker_engine import (
    START_TIMEOUT_S,
    ensure_network,
    remove_containers,
    remove_networks,
    remove_volume,
    run_container,
    wait_answering,
    wait_running,
    write_logs,
)
from clipper.admin.managers.local import ReplicaSet
from clipper.admin.managers.process import ClientSettings, choose_port, free_port
from clipper.admin.managers.secrets import (
    AUTH_TOKEN,
    QUERY_TOKEN,
    REDIS_CONFIG,
    REDIS_PASSWORD,
    RPC_TOKEN,
    ClusterSecrets,
)
from clipper.config.redis_server import redis_command, wait_for_redis
from clipper.config.store import Db
from clipper.errors import ClusterError
from clipper.settings import SECRETS_DIR_VARIABLE
from clipper.types import parse_input_shape

logger = logging.getLogger(__name__)

REDIS_URL_LABEL = "ai.clipper.redis.url"
NETWORK_MODE_LABEL = "ai.clipper.network"
FRONTEND_INDEX_LABEL = "ai.clipper.query_frontend.index"
FRONTEND_RPC_PORT_LABEL = "ai.clipper.query_frontend.own_rpc.port"
# A stopping query frontend first answers what it holds (its drain timeout is 10 s), then exits.
FRONTEND_STOP_TIMEOUT_S = 15
SECRETS_MOUNT = "/run/secrets/clipper"  # where containers find their secret files (read-only)


class DockerContainerManager(ContainerManager):
    """Clipper 0.4's Docker manager on the Docker SDK, with host networking by default."""

    def __init__(
        self,
        cluster_name: str = "default-cluster",
        docker_ip_address: str = "localhost",
        use_centralized_log: bool = False,
        fluentd_port: int = 24224,
        clipper_query_port: int = 1337,
        clipper_management_port: int = 1338,
        clipper_rpc_port: int = 7000,
        redis_ip: str | None = None,
        redis_port: int = 6379,
        prometheus_port: int = 9090,
        docker_network: str = "clipper_network",
        extra_container_kwargs: dict[str, Any] | None = None,
        network_mode: str | None = "host",
        *,
        state_dir: str | os.PathLike[str] | None = None,
        admin_auth: bool = True,
        rpc_auth: bool = True,
        query_auth: bool = False,
        redis_password: str | None = None,
        mount_docker_socket: bool = False,
        start_prometheus: bool = False,
        prometheus_scrape_interval_s: float = 5.0,
    ) -> None:
        """Auth keywords as LocalContainerManager's; secrets live in `state_dir`/secrets on this host
        (default `$CLIPPER_HOME/docker/<cluster_name>`), where `connect()` from any process finds them.

        `mount_docker_socket`: give the management frontend the engine's socket, so its API (and the
        dashboard) can scale replicas and read their logs. Off by default: the socket is root on this host.
        `start_prometheus`: also run Prometheus (image clipper/prometheus:<version>, built on first use) on
        `prometheus_port`, scraping every query frontend; host networking only.
        """
        if use_centralized_log:
            logger.warning("use_centralized_log (fluentd) is not supported; containers log to json-file")
        self.centralize_log = use_centralized_log  # Clipper's attribute: its tests skip get_logs when set
        self.cluster_name = cluster_name
        self.public_hostname = "127.0.0.1" if docker_ip_address == "localhost" else docker_ip_address
        self.fluentd_port = fluentd_port
        self.prometheus_port = prometheus_port
        self._prometheus_scrape_s = prometheus_scrape_interval_s if start_prometheus else None
        self.external_redis = redis_ip is not None
        self.redis_ip = redis_ip or "127.0.0.1"
        self.ports = {
            "query_rest": clipper_query_port,
            "management": clipper_management_port,
            "query_rpc": clipper_rpc_port,
            "redis": redis_port,
            "metric": clipper_query_port,
        }
        # network_mode="host" (default) or docker_network="host" (refused by Clipper): host networking.
        # network_mode=None: a user-defined bridge network `docker_network`, containers found by name.
        self.host_network = network_mode == "host" or docker_network == "host"
        self.network = None if self.host_network else docker_network
        kwargs = dict(extra_container_kwargs or {})
        self.extra_labels: dict[str, str] = kwargs.pop("labels", {}) or {}
        self.extra_container_kwargs = kwargs
        self.client = DockerClient.from_env()
        self.redis_url = self._redis_url()
        home = Path(state_dir) if state_dir is not None else ClientSettings().home / "docker" / cluster_name
        self.state_dir = home.absolute()
        self.secrets = ClusterSecrets(self.state_dir / "secrets")
        self._resumed: dict[tuple[str, str], int] = {}
        self._auth = {AUTH_TOKEN: admin_auth, RPC_TOKEN: rpc_auth, QUERY_TOKEN: query_auth}
        self._redis_password = redis_password
        self.mount_docker_socket = mount_docker_socket

    # ----- naming and lookup -----

    def _labels(self, role: str, **extra: str) -> dict[str, str]:
        return {
            **self.extra_labels,
            CLIPPER_DOCKER_LABEL: self.cluster_name,
            CLIPPER_NAME_LABEL: role,
            NETWORK_MODE_LABEL: "host" if self.host_network else str(self.network),
            **extra,
        }

    def _containers(self, *filters: str, all_states: bool = True) -> list[Container]:
        labels = [f"{CLIPPER_DOCKER_LABEL}={self.cluster_name}", *filters]
        return list(self.client.containers.list(all=all_states, filters={"label": labels}))

    def _redis_url(self) -> str:
        if self.external_redis or self.host_network:
            return f"redis://{self.redis_ip}:{self.ports['redis']}"
        return f"redis://{self._name('redis')}:{CLIPPER_INTERNAL_REDIS_PORT}"

    def _name(self, role: str) -> str:
        return f"{self.cluster_name}-{role}"

    def _volume(self) -> str:
        """The Redis volume, named after the cluster and this host's state directory of it, so a cluster of
        the same name kept under another CLIPPER_HOME is never resumed by mistake."""
        return redis_volume_name(self.cluster_name, self.state_dir)

    @property
    def replicas_file(self) -> Path:
        """Where `stop_all` leaves the replica counts for the next `start_clipper`."""
        return self.state_dir / "replicas.json"

    # ----- starting containers -----

    def _run(
        self,
        image: str,
        name: str,
        labels: dict[str, str],
        env: dict[str, str],
        command: list[str] | None = None,
        publish: dict[int, int] | None = None,
        **kwargs: Any,
    ) -> Container:
        """Start a container on this cluster's network, with the user's extra container arguments.

        The engine restarts a container that exits unless it was stopped (`unless-stopped`), as the local
        manager's supervisor does; the user's extra arguments may choose another policy.
        """
        volumes = {**self.extra_container_kwargs.get("volumes", {}), **kwargs.pop("volumes", {})}
        run_kwargs = {
            "restart_policy": {"Name": "unless-stopped"},
            **self.extra_container_kwargs,
            **kwargs,
            "volumes": volumes,
        }
        run_kwargs.update(name=name, labels=labels, environment=env)
        return run_container(self.client, image, command, self.network, publish, **run_kwargs)

    def _image(self, image: str) -> str:
        """Clipper 0.4's image names map to our images (frontends: the runtime; noop and closure containers:
        images of ours tagged with Clipper's name); any other image must be on the engine already."""
        kind = clipper_images.image_kind(image)
        exists = image != "default" and images.image_exists(self.client, image)
        if kind is not None and (not exists or images.is_ours(self.client, image)):
            return images.ensure_clipper_image(self.client, image, kind)
        if exists:
            return image
        if images.is_clipper_role_image(image):
            return images.ensure_runtime_image(self.client)
        raise ClipperException(
            f"Image {image} is not on this engine (nothing is pulled) and is not one of Clipper's images "
            "we serve (frontends, noop-container, python*-closure-container); build it first."
        )

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
        """Start Redis (unless given), the management and the query frontend(s); leave the manager connected.

        With host networking, query frontends share the query port (SO_REUSEPORT), each with its own RPC port.
        """
        if num_frontend_replicas < 1:
            raise ClusterError("num_frontend_replicas must be at least 1")
        self._check_frontend_count(num_frontend_replicas)
        if self._containers(all_states=False):
            raise ClusterError(
                f"Cluster {self.cluster_name} cannot be started because it already exists. "
                "Please use ClipperConnection.connect() to connect to it."
            )
        remove_containers(self._containers())  # leftovers of a crashed run
        self.secrets.enable_cluster(self._auth, self.external_redis, self._redis_password)
        qf_image, mgmt_image = self._image(query_frontend_image), self._image(mgmt_frontend_image)
        if self.network is not None:
            ensure_network(self.client, self.network, {CLIPPER_DOCKER_LABEL: self.cluster_name})
        taken: set[int] = set()
        for key in ("query_rest", "query_rpc", "management") + (() if self.external_redis else ("redis",)):
            self.ports[key] = choose_port(self.ports[key], taken, key.replace("_", " "))
            taken.add(self.ports[key])
        self.ports["metric"] = self.ports["query_rest"]
        self.redis_url = self._redis_url()
        served = {CLIPPER_DOCKER_PORT_LABELS[k]: str(v) for k, v in self.ports.items()}
        served[REDIS_URL_LABEL] = self.redis_url
        started: list[Container] = []
        if not self.external_redis:
            started.append(self._start_redis(qf_image))
            wait_running(started)
        password = self.secrets.read(REDIS_PASSWORD)
        wait_for_redis(self.redis_ip, self.ports["redis"], START_TIMEOUT_S, password=password)
        self._forget_replicas(password)
        common = {
            SECRETS_DIR_VARIABLE: SECRETS_MOUNT,
            "CLIPPER_REDIS_URL": self.redis_url,
            "CLIPPER_LOG_LEVEL": "INFO",
            "CLIPPER_HTTP_HOST": "127.0.0.1" if self.host_network else "0.0.0.0",
        }
        mgmt_port = self.ports["management"] if self.host_network else CLIPPER_INTERNAL_MANAGEMENT_PORT
        started.append(
            self._run(
                mgmt_image,
                self._name("mgmt_frontend"),
                self._labels("management_frontend", **{CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL: ""}, **served),
                {**common, "CLIPPER_MANAGEMENT_PORT": str(mgmt_port), **self._replica_control_env()},
                ["python", "-m", "clipper.frontends.management"],
                publish={CLIPPER_INTERNAL_MANAGEMENT_PORT: self.ports["management"]},
                volumes=self._secrets_volume() | self._replica_control_volumes(),
            )
        )
        qf_labels = self._labels("query_frontend", **{CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL: ""}, **served)
        qf_env = {**common, "CLIPPER_CACHE_SIZE_BYTES": str(cache_size)}
        frontends = [
            self._start_frontend(qf_image, i, qf_env, qf_labels, set()) for i in range(num_frontend_replicas)
        ]
        wait_running(started + frontends)
        self._wait_serving(frontends)
        if self._prometheus_scrape_s is not None:
            prometheus_docker.start(self, self._prometheus_scrape_s)
        self._resume()

    def _forget_replicas(self, password: str | None) -> None:
        """Drop the replica and frontend records a stopped (or killed) run left in Redis: before this start's
        frontends run, no replica is connected, so every such record is stale."""
        for db in (Db.CONTAINERS, Db.FRONTENDS):
            client = redis.Redis(host=self.redis_ip, port=self.ports["redis"], db=int(db), password=password)
            try:
                client.flushdb()
            finally:
                client.close()

    def _resume(self) -> None:
        """Start the replicas the cluster ran when it was stopped, so serving resumes on its own."""
        if not self.replicas_file.exists():
            return
        for rs in TypeAdapter(list[ReplicaSet]).validate_json(self.replicas_file.read_bytes()):
            logger.info("Resuming model %s:%s with %d replica(s) as before", rs.name, rs.version, rs.replicas)
            self.set_num_replicas(
                rs.name, rs.version, rs.input_type, rs.image, rs.replicas, input_shape=rs.input_shape
            )
            self._resumed[(rs.name, rs.version)] = rs.replicas
        self.replicas_file.unlink()

    def resumed_replicas(self) -> dict[tuple[str, str], int]:
        return dict(self._resumed)

    def _check_frontend_count(self, num_frontends: int) -> None:
        if num_frontends > 1 and not self.host_network:
            raise ClusterError(
                "Several query frontends share the query port only with host networking "
                "(network_mode='host'); on a bridge network one container holds the published port."
            )

    def _start_frontend(
        self, image: str, index: int, env: dict[str, str], labels: dict[str, str], used_ports: set[int]
    ) -> Container:
        """Start query frontend `index`: frontend 0 takes the cluster's RPC port, the others free ones."""
        frontend_id = secrets.token_hex(3)
        name = self._name(f"query_frontend-{frontend_id}")
        if self.host_network:
            rpc_host, query_port, rpc_port = "127.0.0.1", self.ports["query_rest"], self.ports["query_rpc"]
            taken = used_ports | set(self.ports.values())
            while index > 0 and rpc_port in taken:
                rpc_port = free_port()
            used_ports.add(rpc_port)
        else:
            # The RPC host is also the address the frontend advertises to model containers: on a bridge
            # network that is its container name, which resolves to its own address there.
            rpc_host, query_port, rpc_port = name, CLIPPER_INTERNAL_QUERY_PORT, CLIPPER_INTERNAL_RPC_PORT
        own = {
            CLIPPER_QUERY_FRONTEND_ID_LABEL: frontend_id,
            FRONTEND_INDEX_LABEL: str(index),
            FRONTEND_RPC_PORT_LABEL: str(rpc_port),
        }
        return self._run(
            image,
            name,
            {**labels, **own},
            {
                **env,
                "CLIPPER_HTTP_PORT": str(query_port),
                "CLIPPER_RPC_HOST": rpc_host,
                "CLIPPER_RPC_PORT": str(rpc_port),
                "CLIPPER_FRONTEND_ID": f"{self.cluster_name}-{frontend_id}",
            },
            ["python", "-m", "clipper.frontends.query"],
            publish={
                CLIPPER_INTERNAL_QUERY_PORT: self.ports["query_rest"],
                CLIPPER_INTERNAL_RPC_PORT: self.ports["query_rpc"],
            },
            volumes=self._secrets_volume(),
        )

    def _replica_control_env(self) -> dict[str, str]:
        """What the management frontend needs to build this manager in its container (replica_control.py)."""
        if not self.mount_docker_socket:
            return {}
        return {
            "CLIPPER_REPLICA_CONTROL": "docker",
            "CLIPPER_CLUSTER_NAME": self.cluster_name,
            "CLIPPER_STATE_DIR": str(self.state_dir),
        }

    def _replica_control_volumes(self) -> dict[str, dict[str, str]]:
        """The engine's socket, and the state directory (its secrets) read-only at this host's path: the
        volumes of the replicas the management frontend starts name host paths. (Not the secrets directory
        itself: it is mounted already, at SECRETS_MOUNT, and a host path is one key of the volumes.)"""
        if not self.mount_docker_socket:
            return {}
        socket = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if not socket.startswith("unix://"):
            raise ClusterError(f"mount_docker_socket needs a unix socket, not DOCKER_HOST={socket}")
        path = socket.removeprefix("unix://")
        state = str(self.state_dir)
        return {
            path: {"bind": "/var/run/docker.sock", "mode": "rw"},
            state: {"bind": state, "mode": "ro"},
        }

    def _secrets_volume(self) -> dict[str, dict[str, str]]:
        """The whole secrets directory, read-only, for the frontends."""
        return {str(self.secrets.directory): {"bind": SECRETS_MOUNT, "mode": "ro"}}

    def _secret_file_volume(self, name: str) -> dict[str, dict[str, str]]:
        """One secret file, read-only, for containers that must not see the others."""
        return {str(self.secrets.path(name)): {"bind": f"{SECRETS_MOUNT}/{name}", "mode": "ro"}}

    def cluster_secret(self, name: str) -> str | None:
        """From this host's secrets directory of the cluster."""
        return self.secrets.read(name)

    def _wait_serving(self, frontends: list[Container], timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll /health on the shared query port until each frontend has answered once, by its id.

        A new connection each time: SO_REUSEPORT spreads connections over the frontends.
        """
        waiting = {f"{self.cluster_name}-{c.labels[CLIPPER_QUERY_FRONTEND_ID_LABEL]}": c for c in frontends}
        url = f"http://{self.get_query_addr()}/health"
        wait_answering(url, "frontend_id", waiting, "Query frontends", timeout_s)

    def _frontends(self, all_states: bool = False) -> list[Container]:
        """This cluster's query frontend containers, in index order."""
        found = self._containers(CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL, all_states=all_states)
        return sorted(found, key=lambda c: int(c.labels.get(FRONTEND_INDEX_LABEL, "0")))

    def get_num_frontends(self) -> int:
        """Running query frontend containers."""
        return len(self._frontends())

    def set_num_frontends(self, num_frontends: int) -> None:
        """Start or stop query frontends; a stopped one drains (answers what it holds) before it exits.

        New frontends copy a running one's image and settings. Model containers learn the new list from
        the frontends and connect or disconnect on their own, without restarting.
        """
        if num_frontends < 1:
            raise ClusterError("A cluster needs at least one query frontend")
        self._check_frontend_count(num_frontends)
        remove_containers(c for c in self._frontends(all_states=True) if c.status in ("exited", "dead"))
        current = self._frontends()
        if len(current) > num_frontends:
            remove_containers(current[num_frontends:], stop_timeout_s=FRONTEND_STOP_TIMEOUT_S)
            return
        if not current:
            raise ClusterError(f"Cluster {self.cluster_name} has no running query frontend to copy.")
        template = current[0]
        own = (CLIPPER_QUERY_FRONTEND_ID_LABEL, FRONTEND_INDEX_LABEL, FRONTEND_RPC_PORT_LABEL)
        labels = {k: v for k, v in template.labels.items() if k not in own}
        env = dict(e.split("=", 1) for e in template.attrs["Config"]["Env"])
        env = {k: v for k, v in env.items() if k.startswith("CLIPPER_")}
        used_ports = {int(c.labels.get(FRONTEND_RPC_PORT_LABEL, "0")) for c in current}
        used = {int(c.labels.get(FRONTEND_INDEX_LABEL, "0")) for c in current}
        free = (i for i in range(num_frontends * 2 + 1) if i not in used)
        image = template.attrs["Image"]  # the running image's id, so every frontend runs the same code
        started = [
            self._start_frontend(image, next(free), env, labels, used_ports)
            for _ in range(num_frontends - len(current))
        ]
        wait_running(started)
        self._wait_serving(started)

    def _start_redis(self, image: str) -> Container:
        """Redis with AOF on the named volume `<cluster>-redis-data` (Clipper lost its state without one)."""
        port = self.ports["redis"] if self.host_network else CLIPPER_INTERNAL_REDIS_PORT
        bind = "127.0.0.1" if self.host_network else "0.0.0.0"
        self.client.volumes.create(self._volume(), labels={CLIPPER_DOCKER_LABEL: self.cluster_name})
        volumes = {self._volume(): {"bind": "/data", "mode": "rw"}}
        config = None
        if self.secrets.redis_config() is not None:  # the password, in a file `ps` cannot show
            volumes |= self._secret_file_volume(REDIS_CONFIG)
            config = Path(SECRETS_MOUNT) / REDIS_CONFIG
        return self._run(
            image,
            self._name("redis"),
            self._labels("redis", **{CLIPPER_DOCKER_PORT_LABELS["redis"]: str(self.ports["redis"])}),
            {},
            redis_command("/usr/bin/redis-server", port, Path("/data"), bind, config_file=config),
            publish={CLIPPER_INTERNAL_REDIS_PORT: self.ports["redis"]},
            volumes=volumes,
        )

    def connect(self) -> None:
        """Rebuild ports, network and Redis address from the labels of this cluster's running containers."""
        found = self._containers(f"{CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL}", all_states=False)
        found += self._containers(f"{CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL}", all_states=False)
        if not found:
            raise ClusterError(f"No running frontend of cluster {self.cluster_name} found; start it first.")
        labels = found[0].labels
        for key, label in CLIPPER_DOCKER_PORT_LABELS.items():
            if label in labels:
                self.ports[key] = int(labels[label])
        network = labels.get(NETWORK_MODE_LABEL, "host")
        self.host_network = network == "host"
        self.network = None if self.host_network else network
        self.redis_url = labels.get(REDIS_URL_LABEL, self.redis_url)

    # ----- model containers -----

    def model_containers(self, name: str, version: str, all_states: bool = True) -> list[Container]:
        label = f"{CLIPPER_MODEL_CONTAINER_LABEL}={model_container_label(name, version)}"
        return self._containers(label, all_states=all_states)

    def get_num_replicas(self, name: str, version: str) -> int:
        """Running containers of this model version."""
        return len(self.model_containers(name, version, all_states=False))

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
        """Add or remove (not just stop) containers until `num_replicas` run."""
        containers = self.model_containers(name, version)
        remove_containers([c for c in containers if c.status not in ("running", "created", "restarting")])
        running = [c for c in containers if c.status in ("running", "created", "restarting")]
        if len(running) > num_replicas:
            remove_containers(running[num_replicas:])
            return
        image = self._image(image)
        label = model_container_label(name, version)
        rpc_host, rpc_port = self._seed_frontend()
        env = {
            "CLIPPER_MODEL_NAME": name,
            "CLIPPER_MODEL_VERSION": str(version),
            "CLIPPER_IP": rpc_host,
            "CLIPPER_PORT": str(rpc_port),
            "CLIPPER_INPUT_TYPE": input_type,
            **input_shape_env(input_shape),
        }  # CLIPPER_MODEL_PATH: /model is the runtime's default and what model images set
        volumes = {}
        if self.secrets.read(RPC_TOKEN) is not None:  # only the RPC token: model code is the user's
            env[SECRETS_DIR_VARIABLE] = SECRETS_MOUNT
            volumes = self._secret_file_volume(RPC_TOKEN)
        new = [
            self._run(
                image,
                self._name(f"{label}-{secrets.token_hex(3)}"),
                self._labels("model", **{CLIPPER_MODEL_CONTAINER_LABEL: label}),
                env,
                ["python", "-m", "clipper.runtime"],
                volumes=volumes,
            )
            for _ in range(num_replicas - len(running))
        ]
        wait_running(new)

    def _seed_frontend(self) -> tuple[str, int]:
        """RPC address a new model container dials first: any live frontend's (it then learns the others)."""
        found = self._frontends()
        if not found:
            raise ClusterError(f"Cluster {self.cluster_name} has no running query frontend.")
        if not self.host_network:
            return str(found[0].name), CLIPPER_INTERNAL_RPC_PORT
        return "127.0.0.1", int(found[0].labels.get(FRONTEND_RPC_PORT_LABEL, self.ports["query_rpc"]))

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """Build `[<registry>/]<cluster>-<name>:<version>` from the model dir; push only to a registry."""
        image = images.model_image_name(self.cluster_name, name, str(version), container_registry)
        base = self._image(base_image) if base_image else images.ensure_runtime_image(self.client)
        images.build_model_image(self.client, image, model_data_path, base, pkgs_to_install)
        if container_registry:
            images.push_image(self.client, image)
        return image

    # ----- logs and stopping -----

    def get_logs(self, logging_dir: str) -> list[str]:
        """One file per container of this cluster: `image_<id>:container_<id>.log` (stdout and stderr)."""
        return write_logs(self._containers(), logging_dir)

    def stop_models(self, models: dict[str, list[str]]) -> None:
        """Remove the containers of the given `{name: [versions]}`."""
        for name, versions in models.items():
            for version in versions:
                remove_containers(self.model_containers(name, version))

    def stop_all_model_containers(self) -> None:
        """Remove every model container of this cluster."""
        remove_containers(self._containers(CLIPPER_MODEL_CONTAINER_LABEL))

    def stop_all(self, graceful: bool = True, remove_state: bool = False) -> None:
        """Remove this cluster's containers (models first) and network. Its state is kept for the next
        `start_clipper` (the Redis volume: apps, models, links, versions; `replicas.json` in the state
        directory: replica counts), unless `remove_state`: then the volume and the state directory go."""
        models = self._containers(CLIPPER_MODEL_CONTAINER_LABEL, all_states=False)
        plan = replica_plan(models)
        remove_containers(models, graceful=graceful)
        remove_containers(self._containers(), graceful=graceful)
        remove_networks(self.client, f"{CLIPPER_DOCKER_LABEL}={self.cluster_name}")
        if remove_state:
            remove_volume(self.client, self._volume())
            shutil.rmtree(self.state_dir, ignore_errors=True)
            logger.info("Removed the state of cluster %s (volume %s, %s)", self.cluster_name, self._volume(),
                        self.state_dir)  # fmt: skip
            return
        if plan:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.replicas_file.write_bytes(TypeAdapter(list[ReplicaSet]).dump_json(plan))
        logger.info(
            "Stopped cluster %s; its state is kept in volume %s and %s for the next start "
            "(stop_all(remove_state=True) or `clipper stop --purge` deletes it)",
            self.cluster_name, self._volume(), self.state_dir,
        )  # fmt: skip

    # ----- addresses -----

    def get_admin_addr(self) -> str:
        return f"{self.public_hostname}:{self.ports['management']}"

    def get_query_addr(self) -> str:
        return f"{self.public_hostname}:{self.ports['query_rest']}"

    def get_metric_addr(self) -> str:
        """The cluster's Prometheus when it runs one, else the query frontend (its /metrics)."""
        return prometheus_docker.address(self) or f"{self.public_hostname}:{self.ports['metric']}"


def redis_volume_name(cluster_name: str, state_dir: Path) -> str:
    """`<cluster>-redis-data-<hash of the state directory>`: the Redis volume of that cluster kept there."""
    return f"{cluster_name}-redis-data-{hashlib.sha256(str(state_dir).encode()).hexdigest()[:8]}"


def replica_plan(containers: list[Container]) -> list[ReplicaSet]:
    """Running model containers, counted per version, with what a start needs to run them again."""
    plan: dict[tuple[str, str], ReplicaSet] = {}
    for c in containers:
        env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"] or [] if "=" in e)
        name, version = env.get("CLIPPER_MODEL_NAME"), env.get("CLIPPER_MODEL_VERSION")
        if name is None or version is None:
            continue
        found = plan.setdefault(
            (name, version),
            ReplicaSet(
                name=name,
                version=version,
                input_type=env.get("CLIPPER_INPUT_TYPE", "doubles"),
                image=c.attrs["Config"]["Image"],
                replicas=0,
                input_shape=parse_input_shape(env.get("CLIPPER_INPUT_SHAPE")),
            ),
        )
        found.replicas += 1
    return list(plan.values())
