"""LocalContainerManager: a cluster of local processes (Redis, frontends, model replicas) on 127.0.0.1.

Processes run in their own sessions, so they outlive the script that started them; their records, logs,
Redis data and `cluster.json` live in the cluster's state directory, where any interpreter finds them. A
supervisor process (`clipper.admin.supervisor`) restarts any of them that exits without being stopped.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import requests
from pydantic import BaseModel, Field, TypeAdapter

from clipper.admin import clipper_images
from clipper.admin.exceptions import ClipperException
from clipper.admin.managers import prometheus
from clipper.admin.managers.base import ContainerManager, input_shape_env
from clipper.admin.managers.process import (
    SUPERVISOR_ROLE,
    ClusterInfo,
    ProcessRecord,
    ProcessTable,
    choose_port,
    cluster_state_dir,
    free_port,
    is_alive,
    log_tail,
    wait_until,
)
from clipper.admin.managers.secrets import (
    AUTH_TOKEN,
    QUERY_TOKEN,
    REDIS_PASSWORD,
    RPC_TOKEN,
    ClusterSecrets,
)
from clipper.config.redis_server import start_redis, wait_for_redis
from clipper.errors import ClusterError
from clipper.runtime.frameworks import check_model_packages
from clipper.settings import SECRETS_DIR_VARIABLE
from clipper.types import parse_input_shape

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
PROMETHEUS_ROLE = "prometheus"
PREDICT_MODULE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
SITE_PACKAGES = "site-packages"  # in a model directory: the packages build_model installed for it


class LocalContainerManager(ContainerManager):
    """Runs one cluster as local processes; Clipper 0.4's manager interface, `image` = a model directory."""

    def __init__(
        self,
        cluster_name: str = "default-cluster",
        clipper_query_port: int = 1337,
        clipper_management_port: int = 1338,
        clipper_rpc_port: int = 7000,
        redis_ip: str | None = None,
        redis_port: int = 6379,
        prometheus_port: int = 9090,
        state_dir: str | os.PathLike[str] | None = None,
        redis_binary: str | None = None,
        start_timeout_s: float = 60.0,
        *,
        admin_auth: bool = True,
        rpc_auth: bool = True,
        query_auth: bool = False,
        redis_password: str | None = None,
        start_prometheus: bool = False,
        prometheus_scrape_interval_s: float = 5.0,
    ) -> None:
        """`admin_auth`: /admin needs the cluster's token (off for Clipper 0.4 REST clients). `rpc_auth`:
        containers must present the RPC token (off for Clipper 0.4 containers). `query_auth`: predict
        requests need a query token. `redis_password`: of the Redis at `redis_ip` (our own Redis always
        gets a generated one). Tokens are made once per state directory, in `<state_dir>/secrets`.
        `start_prometheus`: also run a Prometheus server on `prometheus_port` scraping every query frontend
        (needs a `prometheus` binary on PATH; skipped with a log line without one).
        """
        self.cluster_name = cluster_name
        self.state_dir = cluster_state_dir(cluster_name, state_dir)
        self.secrets = ClusterSecrets(self.state_dir.absolute() / "secrets")
        self._auth = {AUTH_TOKEN: admin_auth, RPC_TOKEN: rpc_auth, QUERY_TOKEN: query_auth}
        self._redis_password = redis_password
        self.procs = ProcessTable(self.state_dir)
        self.redis_ip = redis_ip
        self.redis_binary = redis_binary
        self.start_timeout_s = start_timeout_s
        self._requested = {
            "query": clipper_query_port,
            "management": clipper_management_port,
            "rpc": clipper_rpc_port,
            "redis": redis_port,
        }
        self._prometheus_port = prometheus_port if start_prometheus else None
        self._scrape_interval_s = prometheus_scrape_interval_s
        self.info: ClusterInfo | None = None
        self._resumed: dict[tuple[str, str], int] = {}

    @property
    def cluster_file(self) -> Path:
        return self.state_dir / "cluster.json"

    # -- cluster ---------------------------------------------------------------------------------------

    def live_records(self) -> list[ProcessRecord]:
        """Records of this cluster's processes that still run."""
        return [r for r in self.procs.records() if is_alive(r)]

    def start_clipper(
        self,
        query_frontend_image: str = "",
        mgmt_frontend_image: str = "",
        frontend_exporter_image: str = "",
        cache_size: int = 33554432,
        qf_http_thread_pool_size: int = 1,
        qf_http_timeout_request: int = 5,
        qf_http_timeout_content: int = 300,
        num_frontend_replicas: int = 1,
    ) -> None:
        """Start Redis (unless `redis_ip` was given), the management and query frontend(s); wait until ready.

        Query frontends share the query port (SO_REUSEPORT), each with its own RPC port.
        """
        if num_frontend_replicas < 1:
            raise ClusterError("num_frontend_replicas must be at least 1")
        if self.live_records():
            raise ClusterError(
                f"Cluster {self.cluster_name} cannot be started because it already exists. "
                "Call connect() to use it or stop_all() to stop it first."
            )
        plan = self._saved_replicas() | replica_plan(self.procs.records())  # dead records: a crash
        self.procs.stop(self.procs.records())  # records of processes that died; nothing is running
        started: list[ProcessRecord] = []
        try:
            info = self._choose_ports(cache_size)
            self.secrets.enable_cluster(self._auth, info.external_redis, self._redis_password)
            if not info.external_redis:
                started.append(self._start_redis(info.redis_port))
            else:
                password = self.secrets.read(REDIS_PASSWORD)
                wait_for_redis(info.redis_host, info.redis_port, 10.0, password=password)
            mgmt_env = self._redis_env(info) | {
                "CLIPPER_HTTP_HOST": HOST,
                "CLIPPER_MANAGEMENT_PORT": str(info.management_port),
                # Same user, same machine: it scales replicas through this manager (replica_control.py).
                "CLIPPER_REPLICA_CONTROL": "local",
                "CLIPPER_CLUSTER_NAME": self.cluster_name,
                "CLIPPER_STATE_DIR": str(self.state_dir.resolve()),
            }
            started.append(
                self.procs.spawn(
                    "management",
                    ["clipper.frontends.management"],
                    mgmt_env,
                    ports={"http": info.management_port},
                )
            )
            started += [self._spawn_frontend(info, i) for i in range(num_frontend_replicas)]
            self.cluster_file.write_text(info.model_dump_json(indent=2))
            self.info = info
            self._wait_ready(started)
            started += self._start_prometheus(info)
            started.append(self._start_supervisor())
        except BaseException:
            self.procs.stop(started, graceful=False)
            self.cluster_file.unlink(missing_ok=True)
            self.info = None
            raise
        logger.info("Started cluster %s: query %s, management %s", self.cluster_name, *self._addrs())
        self._resume(plan)

    def resumed_replicas(self) -> dict[tuple[str, str], int]:
        return dict(self._resumed)

    @property
    def replicas_file(self) -> Path:
        """Where `stop_all` leaves the replica counts for the next `start_clipper`."""
        return self.state_dir / "replicas.json"

    def _saved_replicas(self) -> dict[tuple[str, str], ReplicaSet]:
        if not self.replicas_file.exists():
            return {}
        sets = TypeAdapter(list[ReplicaSet]).validate_json(self.replicas_file.read_bytes())
        return {(r.name, r.version): r for r in sets}

    def _resume(self, plan: dict[tuple[str, str], ReplicaSet]) -> None:
        """Start the replicas the cluster ran before it stopped (or died), so serving resumes on its own."""
        for (name, version), rs in sorted(plan.items()):
            logger.info("Resuming model %s:%s with %d replica(s) as before", name, version, rs.replicas)
            self.set_num_replicas(
                name, version, rs.input_type, rs.image, rs.replicas, input_shape=rs.input_shape
            )
            self._resumed[(name, version)] = rs.replicas
        self.replicas_file.unlink(missing_ok=True)

    def _choose_ports(self, cache_size_bytes: int) -> ClusterInfo:
        taken: set[int] = set()

        def pick(role: str) -> int:
            port = choose_port(self._requested[role], taken, role)
            taken.add(port)
            return port

        external = self.redis_ip is not None
        return ClusterInfo(
            cluster_name=self.cluster_name,
            query_port=pick("query"),
            management_port=pick("management"),
            rpc_port=pick("rpc"),
            redis_host=self.redis_ip if self.redis_ip is not None else HOST,
            redis_port=self._requested["redis"] if external else pick("redis"),
            external_redis=external,
            cache_size_bytes=cache_size_bytes,
        )

    def _secrets_env(self) -> dict[str, str]:
        """Where processes read their secrets: a path, so no value is in an environment or record."""
        return {SECRETS_DIR_VARIABLE: str(self.secrets.directory)}

    def _redis_env(self, info: ClusterInfo) -> dict[str, str]:
        return {"CLIPPER_REDIS_URL": f"redis://{info.redis_host}:{info.redis_port}"} | self._secrets_env()

    def cluster_secret(self, name: str) -> str | None:
        """From the cluster's state directory, so any process of this user can administer it."""
        return self.secrets.read(name)

    def _spawn_frontend(self, info: ClusterInfo, index: int) -> ProcessRecord:
        """Start query frontend `index`: frontend 0 takes the cluster's RPC port, the others free ones."""
        rpc_port = info.rpc_port
        if index > 0:
            in_use = self._ports_in_use(info)
            while rpc_port in in_use:
                rpc_port = free_port()
        env = self._redis_env(info) | {
            "CLIPPER_HTTP_HOST": HOST,
            "CLIPPER_HTTP_PORT": str(info.query_port),
            "CLIPPER_RPC_HOST": HOST,
            "CLIPPER_RPC_PORT": str(rpc_port),
            "CLIPPER_CACHE_SIZE_BYTES": str(info.cache_size_bytes),
            # Stable across restarts: a restarted frontend takes over its registration and first clears
            # the replica records its killed predecessor left in the store.
            "CLIPPER_FRONTEND_ID": f"{self.cluster_name}-query-{index}",
        }
        ports = {"http": info.query_port, "rpc": rpc_port}
        return self.procs.spawn(f"query-{index}", ["clipper.frontends.query"], env, ports=ports)

    def _ports_in_use(self, info: ClusterInfo) -> set[int]:
        ports = {info.query_port, info.management_port, info.rpc_port, info.redis_port}
        return ports | {p for r in self.live_records() for p in r.ports.values()}

    def frontends(self) -> list[ProcessRecord]:
        """Live query frontends, in index order."""
        found = [r for r in self.live_records() if r.role.startswith("query-")]
        return sorted(found, key=lambda r: int(r.role.rsplit("-", 1)[1]))

    def get_num_frontends(self) -> int:
        return len(self.frontends())

    def set_num_frontends(self, num_frontends: int) -> None:
        """Start or stop query frontends; a stopped one drains (answers what it holds) before it exits.

        Containers learn the new list from the frontends and connect or disconnect on their own.
        """
        if num_frontends < 1:
            raise ClusterError("A cluster needs at least one query frontend")
        info = self._required_info()
        current = self.frontends()
        dead = [r for r in self.procs.records() if r.role.startswith("query-") and r not in current]
        self.procs.stop(dead)  # forget them, or the supervisor would restart them beside the new ones
        if len(current) > num_frontends:
            self.procs.stop(current[num_frontends:])
            return
        used = {int(r.role.rsplit("-", 1)[1]) for r in current}
        free = (i for i in range(num_frontends * 2 + 1) if i not in used)
        started = [self._spawn_frontend(info, next(free)) for _ in range(num_frontends - len(current))]
        for rec in started:
            url = f"http://{HOST}:{rec.ports['http']}/health"
            wait_until(
                functools.partial(_answers, url), f"{rec.role} to answer", started, self.start_timeout_s
            )

    def _seed_rpc_port(self, info: ClusterInfo) -> int:
        """The RPC port a new container dials first: any live frontend's (it then learns the others)."""
        live = self.frontends()
        return live[0].ports["rpc"] if live else info.rpc_port

    def _start_redis(self, port: int) -> ProcessRecord:
        log_path = self.procs.logs_dir / "redis.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        proc = start_redis(
            port,
            self.state_dir / "redis",
            log_path,
            self.redis_binary,
            timeout_s=self.start_timeout_s,
            config_file=self.secrets.redis_config(),
            password=self.secrets.read(REDIS_PASSWORD),
        )
        cmd = [str(a) for a in proc.args]  # type: ignore[union-attr]  # start_redis passes a list
        return self.procs.record("redis", proc, cmd, {}, log_path, ports={"redis": port})

    def _wait_ready(self, started: list[ProcessRecord]) -> None:
        """Wait for the query frontend's /health and the management /admin/ping; fail fast on a death."""
        query_addr, admin_addr = self._addrs()
        for url in (f"http://{admin_addr}/admin/ping", f"http://{query_addr}/health"):
            wait_until(functools.partial(_answers, url), f"{url} to answer", started, self.start_timeout_s)

    def _start_prometheus(self, info: ClusterInfo) -> list[ProcessRecord]:
        """Start Prometheus (if asked for and installed) and wait until it is ready; it finds the query
        frontends through the management frontend (admin/managers/prometheus.py says why)."""
        if self._prometheus_port is None:
            return []
        binary = prometheus.find_binary()
        if binary is None:
            logger.warning(
                "Prometheus skipped for cluster %s: %s", self.cluster_name, prometheus.NOT_INSTALLED
            )
            return []
        taken = {info.query_port, info.management_port, info.rpc_port, info.redis_port}
        port = choose_port(self._prometheus_port, taken, PROMETHEUS_ROLE)
        listen = f"{HOST}:{port}"
        directory = self.state_dir.absolute() / PROMETHEUS_ROLE
        admin_token, query_token = prometheus.token_files(self.secrets, str(self.secrets.directory))
        plan = prometheus.PrometheusPlan(
            management_address=f"{HOST}:{info.management_port}",
            listen_address=listen,
            scrape_interval_s=self._scrape_interval_s,
            admin_token_file=admin_token,
            query_token_file=query_token,
        )
        config = prometheus.write_config(plan, directory)
        args = prometheus.prometheus_args(str(config), str(directory / "data"), listen)
        rec = self.procs.spawn_program(PROMETHEUS_ROLE, [binary, *args], {}, ports={"http": port})
        ready = functools.partial(_answers, f"http://{listen}/-/ready")
        wait_until(ready, "Prometheus to be ready", [rec], self.start_timeout_s)
        logger.info("Prometheus of cluster %s on http://%s", self.cluster_name, listen)
        return [rec]

    def _start_supervisor(self) -> ProcessRecord:
        env = {"CLIPPER_STATE_DIR": str(self.state_dir.resolve())}
        return self.procs.spawn(SUPERVISOR_ROLE, ["clipper.admin.supervisor"], env)

    def ensure_supervisor(self) -> bool:
        """Start the cluster's supervisor again if it died, so the cluster keeps healing itself; True if
        it had to."""
        rec = self.procs.get(SUPERVISOR_ROLE)
        if rec is not None and is_alive(rec) and not rec.stopping:
            return False
        logger.warning("The supervisor of cluster %s is not running; starting it", self.cluster_name)
        self._start_supervisor()
        return True

    def _frontends_live(self) -> bool:
        return {"management", "query"} <= {r.role.split("-")[0] for r in self.live_records()}

    def connect(self) -> None:
        """Find the running cluster of this name from its state directory.

        If its supervisor had died, start it again and give it a start's time to bring back the frontends.
        """
        info = self._load_info()
        if info is not None and self.ensure_supervisor():
            with contextlib.suppress(ClusterError):  # still down: the error below says so
                self._wait_ready([])
        if info is None or not self._frontends_live():
            raise ClusterError(
                f"No running cluster named {self.cluster_name!r} (state in {self.state_dir}). "
                "Start one with `clipper start` or ClipperConnection.start_clipper()."
            )
        self.info = info

    def _load_info(self) -> ClusterInfo | None:
        if self.info is None and self.cluster_file.exists():
            self.info = ClusterInfo.model_validate_json(self.cluster_file.read_text())
        return self.info

    def _required_info(self) -> ClusterInfo:
        info = self._load_info()
        if info is None:
            raise ClusterError(
                f"No cluster named {self.cluster_name!r} was started (state in {self.state_dir})"
            )
        return info

    def _addrs(self) -> tuple[str, str]:
        return self.get_query_addr(), self.get_admin_addr()

    def get_admin_addr(self) -> str:
        return f"{HOST}:{self._required_info().management_port}"

    def get_query_addr(self) -> str:
        return f"{HOST}:{self._required_info().query_port}"

    def get_metric_addr(self) -> str:
        """The cluster's Prometheus server; without one (not asked for, or not installed), the query
        frontend's address, whose /metrics serves the same series for one frontend."""
        rec = self.procs.get(PROMETHEUS_ROLE)
        if rec is not None and is_alive(rec):
            return f"{HOST}:{rec.ports['http']}"
        logger.info(
            "No Prometheus runs for cluster %s; the metric address is the query frontend's", self.cluster_name
        )
        return self.get_query_addr()

    def stop_all(self, graceful: bool = True, remove_state: bool = False) -> None:
        """Stop the supervisor, every process but Redis at once, then our Redis; a Redis given by `redis_ip`
        is left alone. The last pass also takes any process recorded while the others ran.

        The replica counts are kept for the next `start_clipper`, with the rest of the state (Redis data,
        models, secrets, logs), unless `remove_state`: then the state directory goes, and the next start
        begins from nothing.
        """
        plan = replica_plan(self.live_records())
        self.procs.stop([r for r in self.procs.records() if r.role == SUPERVISOR_ROLE], graceful)
        self.procs.stop([r for r in self.procs.records() if r.role != "redis"], graceful)
        self.procs.stop(self.procs.records(), graceful)
        self.cluster_file.unlink(missing_ok=True)
        self.info = None
        if remove_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            logger.info("Removed the state of cluster %s (%s)", self.cluster_name, self.state_dir)
        else:
            if plan:
                self.replicas_file.write_bytes(TypeAdapter(list[ReplicaSet]).dump_json(list(plan.values())))
            logger.info(
                "Stopped cluster %s; its state is kept in %s for the next start "
                "(stop_all(remove_state=True) or `clipper stop --purge` deletes it)",
                self.cluster_name,
                self.state_dir,
            )

    def get_logs(self, logging_dir: str) -> list[str]:
        """Copy every process's log (live or not) into `logging_dir`."""
        target = Path(logging_dir)
        target.mkdir(parents=True, exist_ok=True)
        if not self.procs.logs_dir.is_dir():
            return []
        copied = []
        for log in sorted(self.procs.logs_dir.glob("*.log")):
            dest = target / f"{self.cluster_name}-{log.name}"
            shutil.copyfile(log, dest)
            copied.append(str(dest))
        return copied

    # -- model replicas --------------------------------------------------------------------------------

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """The local "image" of a model: Clipper's noop container stays itself; on a closure image the model
        files go to the model's directory, with `pkgs_to_install` pip-installed into its site-packages."""
        if not Path(model_data_path).is_dir():
            raise ClipperException(f"model_data_path {model_data_path} is not a directory")
        kind = clipper_images.image_kind(base_image)
        if kind is clipper_images.ImageKind.NOOP:
            return base_image
        if kind is not clipper_images.ImageKind.CLOSURE:
            return super().build_model(name, version, model_data_path, base_image)
        path = self.model_directory(name, version)
        shutil.copytree(model_data_path, path, dirs_exist_ok=True)
        clipper_images.log_mapping(base_image, kind, str(path))
        pkgs = [p for p in pkgs_to_install or [] if p]
        if pkgs:
            pip = [sys.executable, "-m", "pip", "install", "-q", "--target", str(path / SITE_PACKAGES)]
            done = subprocess.run([*pip, *pkgs], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                shutil.rmtree(path, ignore_errors=True)
                raise ClipperException(f"pip install {' '.join(pkgs)} failed: {done.stderr.strip()[-2000:]}")
        return str(path)

    def model_directory(self, name: str, version: str) -> Path:
        """A fresh directory in the state dir where a deployer saves a model version's files."""
        path = self.state_dir / "models" / f"{name}-{version}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def _records_of(self, name: str, version: str) -> list[ProcessRecord]:
        """Replica records (live or not) of one model version."""
        return [r for r in self.procs.records() if r.model_name == name and r.model_version == version]

    def replicas(self, name: str, version: str) -> list[ProcessRecord]:
        """Live replica records of one model version."""
        return [r for r in self._records_of(name, version) if is_alive(r)]

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
        if Path(image).is_dir():  # replicas run in this environment: refuse other framework versions now
            check_model_packages(Path(image), [Path(image) / SITE_PACKAGES])
        super().deploy_model(name, version, input_type, image, num_replicas, input_shape=input_shape)

    def get_num_replicas(self, name: str, version: str) -> int:
        return len(self.replicas(name, version))

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
        """Start `python -m clipper.runtime` processes, or stop some, until `num_replicas` run."""
        info = self._required_info()
        mine = self._records_of(name, version)
        current = [r for r in mine if is_alive(r)]
        self.procs.stop([r for r in mine if r not in current])  # forget the dead ones
        if len(current) > num_replicas:
            self.procs.stop(current[num_replicas:])
            return
        used = {r.role for r in current}
        seed_port = str(self._seed_rpc_port(info))
        index = 0
        for _ in range(num_replicas - len(current)):
            while _replica_role(name, version, index) in used:
                index += 1
            role = _replica_role(name, version, index)
            used.add(role)
            env = (
                {
                    "CLIPPER_MODEL_NAME": name,
                    "CLIPPER_MODEL_VERSION": version,
                    "CLIPPER_IP": HOST,
                    "CLIPPER_PORT": seed_port,
                    "CLIPPER_INPUT_TYPE": input_type,
                }
                | input_shape_env(input_shape)
                | _model_source(image)
                | self._secrets_env()
            )  # locally, one user: the replica may read it all
            self.procs.spawn(role, ["clipper.runtime"], env, model_name=name, model_version=version)

    def check_model_replicas(self, name: str, version: str) -> None:
        """Raise with the last log lines if every replica process of the version has exited."""
        records = self._records_of(name, version)
        if records and not any(is_alive(r) for r in records):
            rec = records[-1]
            lines = [ln for ln in log_tail(rec.log_path).splitlines() if ln.strip()]
            cause = lines[-1].strip() if lines else "no output"
            raise ClusterError(
                f"Every replica of model {name}:{version} exited ({cause}); "
                f"the traceback is in {rec.log_path}"
            )

    def stop_models(self, models: dict[str, list[str]]) -> None:
        self.procs.stop(
            r
            for r in self.procs.records()
            if r.model_name in models and r.model_version in models[r.model_name]
        )

    def stop_all_model_containers(self) -> None:
        self.procs.stop(r for r in self.procs.records() if r.model_name is not None)


class ReplicaSet(BaseModel):
    """The replicas one model version runs, as a start needs them again."""

    name: str
    version: str
    input_type: str
    image: str = Field(description="The model directory or 'package.module:function' replicas serve.")
    replicas: int
    input_shape: list[int] | None = None


def replica_plan(records: list[ProcessRecord]) -> dict[tuple[str, str], ReplicaSet]:
    """Model replicas among `records`, counted per version."""
    plan: dict[tuple[str, str], ReplicaSet] = {}
    for r in records:
        if r.model_name is None or r.model_version is None:
            continue
        image = r.env.get("CLIPPER_MODEL_PATH") or r.env.get("CLIPPER_PREDICT_MODULE", "")
        key = (r.model_name, r.model_version)
        found = plan.get(key)
        if found is None:
            found = plan[key] = ReplicaSet(
                name=r.model_name,
                version=r.model_version,
                input_type=r.env.get("CLIPPER_INPUT_TYPE", "doubles"),
                image=image,
                replicas=0,
                input_shape=parse_input_shape(r.env.get("CLIPPER_INPUT_SHAPE")),
            )
        found.replicas += 1
    return plan


def _replica_role(name: str, version: str, index: int) -> str:
    return f"model-{name}-{version}-{index}"


def _model_source(image: str) -> dict[str, str]:
    """A model directory becomes CLIPPER_MODEL_PATH (with its `site-packages`, if built with packages, on
    PYTHONPATH); `pkg.mod:func` becomes CLIPPER_PREDICT_MODULE; Clipper's noop container is our noop."""
    if Path(image).is_dir():
        path = Path(image).resolve()
        packages = path / SITE_PACKAGES
        return {"CLIPPER_MODEL_PATH": str(path)} | (
            {"PYTHONPATH": str(packages)} if packages.is_dir() else {}
        )
    kind = clipper_images.image_kind(image)
    if kind is clipper_images.ImageKind.NOOP:
        clipper_images.log_mapping(image, kind, clipper_images.NOOP_PREDICT_MODULE)
        return {"CLIPPER_PREDICT_MODULE": clipper_images.NOOP_PREDICT_MODULE}
    if kind is clipper_images.ImageKind.CLOSURE:
        raise ClipperException(
            f"Image {image} is Clipper's closure container, which serves a model's files: deploy with "
            "deploy_python_closure, or build_model(..., base_image=...) and deploy what it returns."
        )
    if PREDICT_MODULE.fullmatch(image):
        return {"CLIPPER_PREDICT_MODULE": image}
    raise ClipperException(
        "LocalContainerManager runs models from a directory holding func.pkl (or a "
        f"'package.module:function' name), not from images; {image!r} is neither. "
        "Use clipper.admin.deployers.python.deploy_python_closure."
    )


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
