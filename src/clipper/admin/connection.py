"""ClipperConnection: Clipper 0.4's admin client, speaking only the management REST API and the query address.

Method names, defaults and messages follow Clipper 0.4 (reference §7.2) so user scripts run unchanged.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import cloudpickle
import numpy as np
import requests

from clipper import __version__
from clipper.admin.exceptions import ClipperException, UnconnectedException
from clipper.admin.managers.base import ContainerManager
from clipper.schema import NO_CONTAINER, check_dns_label

logger = logging.getLogger(__name__)

DEFAULT_PREDICTION_CACHE_SIZE_BYTES = 33554432
DEFAULT_REGISTRY = "clipper"
HEALTH_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 30.0


def validate_versioned_model_name(name: str, version: str) -> None:
    """Clipper's client-side DNS-1123 rule for model names and versions."""
    for kind, value in (("model name", name), ("model version", version)):
        try:
            check_dns_label(kind, value)
        except ValueError as e:
            raise ClipperException(str(e)) from None


class ClipperConnection:
    """Admin client of one cluster; every cluster call goes through `cm`'s addresses."""

    def __init__(self, container_manager: ContainerManager) -> None:
        self.connected = False
        self.cm = container_manager
        self._http = requests.Session()
        self._http.headers["Content-type"] = "application/json"

    # -- lifecycle -------------------------------------------------------------------------------------

    def start_clipper(
        self,
        query_frontend_image: str = f"{DEFAULT_REGISTRY}/query_frontend:{__version__}",
        mgmt_frontend_image: str = f"{DEFAULT_REGISTRY}/management_frontend:{__version__}",
        frontend_exporter_image: str = f"{DEFAULT_REGISTRY}/frontend-exporter:{__version__}",
        cache_size: int = DEFAULT_PREDICTION_CACHE_SIZE_BYTES,
        qf_http_thread_pool_size: int = 1,
        qf_http_timeout_request: int = 5,
        qf_http_timeout_content: int = 300,
        num_frontend_replicas: int = 1,
    ) -> None:
        """Start a new cluster with the manager, wait until both frontends answer, and connect."""
        try:
            self.cm.start_clipper(
                query_frontend_image,
                mgmt_frontend_image,
                frontend_exporter_image,
                cache_size,
                qf_http_thread_pool_size,
                qf_http_timeout_request,
                qf_http_timeout_content,
                num_frontend_replicas,
            )
        except ClipperException as e:
            logger.warning("Error starting Clipper: %s", e.msg)
            raise
        self._wait_until_healthy(HEALTH_TIMEOUT_S)
        logger.info("Clipper is running")
        self.connected = True

    def _wait_until_healthy(self, timeout_s: float) -> None:
        """Poll the query frontend's /health and the management /admin/ping until both answer 200."""
        urls = {
            "query frontend": f"http://{self.cm.get_query_addr()}/health",
            "management frontend": f"http://{self.cm.get_admin_addr()}/admin/ping",
        }
        deadline = time.monotonic() + timeout_s
        for name, url in urls.items():
            while True:
                try:
                    if requests.get(url, timeout=5).status_code == 200:
                        break
                    problem = f"{name} end point {url} health check failed"
                except requests.RequestException as e:
                    problem = f"{name} end point {url} unreachable: {e}"
                if time.monotonic() > deadline:
                    raise ClipperException(f"Clipper still initializing after {timeout_s:.0f} s: {problem}")
                time.sleep(0.1)

    def connect(self) -> None:
        """Connect to a running cluster (no health check, as Clipper)."""
        self.cm.connect()
        self.connected = True
        logger.info("Successfully connected to Clipper cluster at %s", self.cm.get_query_addr())

    def stop_all(self, graceful: bool = True) -> None:
        """Stop every process or container of the cluster; a Redis the user gave is left alone."""
        self.cm.stop_all(graceful=graceful)
        self.connected = False
        logger.info("Stopped all Clipper cluster and all model containers")

    # -- REST plumbing ---------------------------------------------------------------------------------

    def _require_connection(self) -> None:
        if not self.connected:
            raise UnconnectedException()

    def _admin(self, endpoint: str, body: dict[str, Any]) -> requests.Response:
        """POST to the management API; a non-200 answer becomes Clipper's ClipperException."""
        self._require_connection()
        url = f"http://{self.cm.get_admin_addr()}/admin/{endpoint}"
        r = self._http.post(url, json=body, timeout=REQUEST_TIMEOUT_S)
        if r.status_code != 200:
            msg = f"Received error status code: {r.status_code} and message: {r.text}"
            logger.error(msg)
            raise ClipperException(msg)
        return r

    def _admin_json(self, endpoint: str, body: dict[str, Any]) -> Any:
        return self._admin(endpoint, body).json()

    # -- applications ----------------------------------------------------------------------------------

    def register_application(
        self, name: str, input_type: str, default_output: str, slo_micros: int, *, on_overload: str = "reject"
    ) -> None:
        """Create the REST endpoint `/<name>/predict`.

        `on_overload` (not in Clipper): "reject" answers 503 when the model's queue is full, "default"
        answers the default output at once.
        """
        body = {
            "name": name,
            "input_type": input_type,
            "default_output": default_output,
            "latency_slo_micros": slo_micros,
            "on_overload": on_overload,
        }
        self._admin("add_app", body)
        logger.info("Application %s was successfully registered", name)

    def unregister_application(self, name: str) -> None:
        """Delete the application (its model and replicas stay)."""
        self._admin("delete_app", {"name": name})
        logger.info("Application %s was successfully unregistered", name)

    def delete_application(self, name: str) -> None:
        """Deprecated name of `unregister_application`."""
        self.unregister_application(name)

    def link_model_to_app(self, app_name: str, model_name: str) -> None:
        """Route the app's queries to the current version of `model_name`."""
        self._admin("add_model_links", {"app_name": app_name, "model_names": [model_name]})
        logger.info("Model %s is now linked to application %s", model_name, app_name)

    def unlink_model_from_app(self, app_name: str, model_name: str) -> None:
        """Remove the link; the app then answers with its default output."""
        self._admin("delete_model_links", {"app_name": app_name, "model_names": [model_name]})
        logger.info("Model %s is now removed to application %s", model_name, app_name)

    def get_all_apps(self, verbose: bool = False) -> list[Any]:
        """Names of all apps, or their descriptions when `verbose`."""
        return list(self._admin_json("get_all_applications", {"verbose": verbose}))

    def get_app_info(self, name: str) -> dict[str, Any] | None:
        """The app's description, or None if it does not exist."""
        info = self._admin_json("get_application", {"name": name})
        return info or None

    def get_linked_models(self, app_name: str) -> list[str]:
        """Names of the models linked to the app (at most one)."""
        return list(self._admin_json("get_linked_models", {"app_name": app_name}))

    # -- models ----------------------------------------------------------------------------------------

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """Build (and push) a model image; only managers with an image builder (Docker) can."""
        version = str(version)
        validate_versioned_model_name(name, version)
        builder = getattr(self.cm, "build_model", None)
        if builder is None:
            raise ClipperException(
                f"{type(self.cm).__name__} cannot build images: building a model image needs "
                "DockerContainerManager. With LocalContainerManager, pass the model directory as `image` "
                "to deploy_model, or use clipper.admin.deployers.python.deploy_python_closure."
            )
        return str(builder(name, version, model_data_path, base_image, container_registry, pkgs_to_install))

    def build_and_deploy_model(
        self,
        name: str,
        version: str,
        input_type: str,
        model_data_path: str,
        base_image: str,
        labels: list[str] | None = None,
        container_registry: str | None = None,
        num_replicas: int = 1,
        batch_size: int = -1,
        pkgs_to_install: list[str] | None = None,
    ) -> None:
        """`build_model`, then `deploy_model` with the built image."""
        self._require_connection()
        image = self.build_model(
            name, version, model_data_path, base_image, container_registry, pkgs_to_install
        )
        self.deploy_model(name, version, input_type, image, labels, num_replicas, batch_size)

    def deploy_model(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str,
        labels: list[str] | None = None,
        num_replicas: int = 1,
        batch_size: int = -1,
    ) -> None:
        """Start the replicas first, then register the version, which makes it current (as Clipper)."""
        self._require_connection()
        version = str(version)
        validate_versioned_model_name(name, version)
        self.cm.deploy_model(
            name=name, version=version, input_type=input_type, image=image, num_replicas=num_replicas
        )
        self.register_model(name, version, input_type, image=image, labels=labels, batch_size=batch_size)
        logger.info("Done deploying model %s:%s.", name, version)

    def register_model(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str | None = None,
        labels: list[str] | None = None,
        batch_size: int = -1,
    ) -> None:
        """Record a model version (no containers are started); it becomes the current version."""
        body = {
            "model_name": name,
            "model_version": str(version),
            "labels": labels if labels is not None else [],
            "input_type": input_type,
            "container_name": image if image is not None else NO_CONTAINER,
            "model_data_path": "DEPRECATED",
            "batch_size": batch_size,
        }
        self._admin("add_model", body)
        logger.info("Successfully registered model %s:%s", name, version)

    def get_current_model_version(self, name: str) -> str:
        """The version queries of `name` go to."""
        for m in self.get_all_models(verbose=True):
            if m["model_name"] == name and m["is_current_version"]:
                return str(m["model_version"])
        raise ClipperException(f"No versions of model {name} registered with Clipper")

    def set_model_version(self, name: str, version: str, num_replicas: int | None = None) -> None:
        """Make `version` current (roll forward or back), optionally resizing its replica set."""
        version = str(version)
        self._admin("set_model_version", {"model_name": name, "model_version": version})
        logger.info("Successfully set model %s to version %s", name, version)
        if num_replicas is not None:
            self.set_num_replicas(name, num_replicas, version)

    def get_all_models(self, verbose: bool = False) -> list[Any]:
        """`name:version` strings, or model descriptions when `verbose`."""
        return list(self._admin_json("get_all_models", {"verbose": verbose}))

    def get_model_info(self, name: str, version: str) -> dict[str, Any] | None:
        """The model version's description, or None if it does not exist."""
        info = self._admin_json("get_model", {"model_name": name, "model_version": str(version)})
        return info or None

    # -- replicas --------------------------------------------------------------------------------------

    def get_num_replicas(self, name: str, version: str | None = None) -> int:
        """How many replicas of the version (default: current) the manager runs."""
        self._require_connection()
        version = self.get_current_model_version(name) if version is None else str(version)
        return self.cm.get_num_replicas(name, version)

    def get_num_frontends(self) -> int:
        """How many query frontends serve the query address."""
        self._require_connection()
        return self.cm.get_num_frontends()

    def set_num_frontends(self, num_frontends: int) -> None:
        """Scale the query frontends; model containers join and leave them without restarting."""
        self._require_connection()
        self.cm.set_num_frontends(num_frontends)

    def set_num_replicas(self, name: str, num_replicas: int, version: str | None = None) -> None:
        """Start or stop replicas of the version (default: current) until `num_replicas` run."""
        self._require_connection()
        version = self.get_current_model_version(name) if version is None else str(version)
        model = self.get_model_info(name, version)
        if model is None:
            raise ClipperException(f"Cannot add container for non-registered model {name}:{version}")
        if model["container_name"] == NO_CONTAINER:
            raise ClipperException(f"Cannot resize the replica set for containerless model {name}:{version}")
        self.cm.set_num_replicas(name, version, model["input_type"], model["container_name"], num_replicas)

    def get_all_model_replicas(self, verbose: bool = False) -> list[Any]:
        """`name:version:replica_id` strings of connected replicas, or their descriptions."""
        return list(self._admin_json("get_all_containers", {"verbose": verbose}))

    def get_model_replica_info(self, name: str, version: str, replica_id: int) -> dict[str, Any] | None:
        """One connected replica's description, or None."""
        body = {"model_name": name, "model_version": str(version), "replica_id": replica_id}
        info = self._admin_json("get_container", body)
        return info or None

    def wait_for_model(
        self, name: str, version: str | None = None, num_replicas: int = 1, timeout_s: float = 60.0
    ) -> None:
        """Block until `num_replicas` replicas of the version have connected to a query frontend."""
        version = self.get_current_model_version(name) if version is None else str(version)
        deadline = time.monotonic() + timeout_s
        check_processes = getattr(self.cm, "check_model_replicas", None)
        while True:
            if check_processes is not None:
                check_processes(name, version)
            prefix = f"{name}:{version}:"
            if sum(r.startswith(prefix) for r in self.get_all_model_replicas()) >= num_replicas:
                return
            if time.monotonic() > deadline:
                raise ClipperException(
                    f"Model {name}:{version} has fewer than {num_replicas} connected replicas after "
                    f"{timeout_s:.0f} s; see the replica logs (get_clipper_logs)"
                )
            time.sleep(0.1)

    # -- stopping models -------------------------------------------------------------------------------

    def _versions(self, model_names: list[str] | None, only_inactive: bool = False) -> dict[str, list[str]]:
        """`{name: [versions]}` of the registered models (all when `model_names` is None)."""
        found: dict[str, list[str]] = {}
        for m in self.get_all_models(verbose=True):
            if model_names is not None and m["model_name"] not in model_names:
                continue
            if only_inactive and m["is_current_version"]:
                continue
            found.setdefault(m["model_name"], []).append(m["model_version"])
        return found

    def _unregister_versioned_models(self, model_versions: dict[str, list[str]]) -> None:
        for name, versions in model_versions.items():
            for version in versions:
                self._admin("delete_versioned_model", {"model_name": name, "model_version": version})
                logger.info("Model %s:%s was successfully deleted", name, version)

    def stop_models(self, model_names: list[str]) -> None:
        """Stop the replicas of every version of these models and unregister the versions."""
        self._require_connection()
        versions = self._versions(model_names)
        self.cm.stop_models(versions)
        self._unregister_versioned_models(versions)

    def stop_versioned_models(self, model_versions_dict: dict[str, list[str]]) -> None:
        """Stop and unregister the given versions, current ones included."""
        self._require_connection()
        self.cm.stop_models(model_versions_dict)
        self._unregister_versioned_models(model_versions_dict)

    def stop_inactive_model_versions(self, model_names: list[str]) -> None:
        """Stop and unregister every version of these models except the current one."""
        self._require_connection()
        versions = self._versions(model_names, only_inactive=True)
        self.cm.stop_models(versions)
        self._unregister_versioned_models(versions)

    def stop_all_model_containers(self) -> None:
        """Stop every model replica of the cluster and unregister every model version."""
        self._require_connection()
        versions = self._versions(None)
        self.cm.stop_all_model_containers()
        self._unregister_versioned_models(versions)

    # -- addresses, logs, metrics ----------------------------------------------------------------------

    def get_query_addr(self) -> str:
        """`host:port` where clients POST `/<app>/predict`."""
        self._require_connection()
        return self.cm.get_query_addr()

    def get_metric_addr(self) -> str:
        """`host:port` serving Prometheus metrics."""
        self._require_connection()
        return self.cm.get_metric_addr()

    def get_clipper_logs(self, logging_dir: str = "clipper_logs/") -> list[str]:
        """Copy every process's or container's log into `logging_dir`; return the paths."""
        self._require_connection()
        return self.cm.get_logs(logging_dir)

    def inspect_instance(self) -> Any:
        """The query frontend's metrics: parsed JSON if it serves JSON, else the Prometheus text."""
        self._require_connection()
        r = self._http.get(f"http://{self.cm.get_query_addr()}/metrics", timeout=REQUEST_TIMEOUT_S)
        if r.status_code != 200:
            raise ClipperException(f"Received error status code: {r.status_code} and message: {r.text}")
        try:
            return r.json()
        except ValueError:
            return r.text

    def test_predict_function(self, query: dict[str, Any], func: Any, input_type: str) -> Any:
        """Check locally that `func` survives a cloudpickle round trip and answers `query`'s inputs."""
        inputs = query.get("input_batch") if "input_batch" in query else [query.get("input")]
        if not isinstance(inputs, list):
            return "Invalid input type or JSON key"
        converters: dict[str, Any] = {
            "integers": lambda x: np.array(x, dtype=np.int32),
            "floats": lambda x: np.array(x, dtype=np.float32),
            "doubles": lambda x: np.array(x, dtype=np.float64),
            "bytes": lambda x: np.frombuffer(x, dtype=np.uint8) if isinstance(x, bytes) else None,
            "strings": lambda x: x if isinstance(x, str) else None,
        }
        convert = converters.get(input_type)
        if convert is None:
            return "Invalid input type"
        try:
            data = [convert(x) for x in inputs]
        except (TypeError, ValueError):
            return "Invalid input type"
        if any(d is None for d in data):
            return "Invalid input type"
        reloaded = cloudpickle.loads(cloudpickle.dumps(func))
        return reloaded(data)
