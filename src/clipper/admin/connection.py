"""ClipperConnection: Clipper 0.4's admin client, speaking only the management REST API and the query address.

Method names, defaults and messages follow Clipper 0.4 (reference §7.2) so user scripts run unchanged.
Lifecycle, applications and addresses live here; model versions and replicas in model_admin.ModelAdmin.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import cloudpickle
import numpy as np
import requests

from clipper import __version__
from clipper.admin.exceptions import ClipperException
from clipper.admin.management_api import REQUEST_TIMEOUT_S
from clipper.admin.model_admin import ModelAdmin

logger = logging.getLogger(__name__)

DEFAULT_PREDICTION_CACHE_SIZE_BYTES = 33554432
DEFAULT_REGISTRY = "clipper"
HEALTH_TIMEOUT_S = 300.0


class ClipperConnection(ModelAdmin):
    """Admin client of one cluster; every cluster call goes through `cm`'s addresses."""

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
        self._wait_until_healthy(HEALTH_TIMEOUT_S)
        self.connected = True
        for (name, version), replicas in sorted(self.cm.resumed_replicas().items()):
            self.wait_for_model(name, version, replicas)
            logger.info("Model %s:%s serves again with %d replica(s)", name, version, replicas)
        logger.info("Clipper is running")

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

    def stop_all(self, graceful: bool = True, remove_state: bool = False) -> None:
        """Stop every process or container of the cluster; a Redis the user gave is left alone.

        The cluster's state (apps, models, links, versions) is kept for the next start, unless
        `remove_state`: then the next `start_clipper()` begins from nothing.
        """
        if remove_state:
            self.cm.stop_all(graceful=graceful, remove_state=True)
        else:  # a manager written for Clipper 0.4 knows only `graceful`
            self.cm.stop_all(graceful=graceful)
        self.connected = False
        logger.info("Stopped all Clipper cluster and all model containers")

    def get_num_frontends(self) -> int:
        """How many query frontends serve the query address."""
        self._require_connection()
        return self.cm.get_num_frontends()

    def set_num_frontends(self, num_frontends: int) -> None:
        """Scale the query frontends; model containers join and leave them without restarting."""
        self._require_connection()
        self.cm.set_num_frontends(num_frontends)

    # -- applications ----------------------------------------------------------------------------------

    def register_application(
        self,
        name: str,
        input_type: str,
        default_output: str,
        slo_micros: int,
        *,
        on_overload: str = "reject",
        input_shape: list[int] | None = None,
    ) -> None:
        """Create the REST endpoint `/<name>/predict`.

        `on_overload` (not in Clipper): "reject" answers 503 when the model's queue is full, "default"
        answers the default output at once. `input_shape` (ours, numeric types): each input's shape;
        only models deployed with the same shape link to the app.
        """
        body: dict[str, object] = {
            "name": name,
            "input_type": input_type,
            "default_output": default_output,
            "latency_slo_micros": slo_micros,
            "on_overload": on_overload,
        }
        if input_shape is not None:
            body["input_shape"] = list(input_shape)
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
        """Names of the models linked to the app (one, or several under a multi-model policy)."""
        return list(self._admin_json("get_linked_models", {"app_name": app_name}))

    def set_app_policy(self, app: str, policy: str, /, **params: Any) -> None:
        """Choose how the app picks among its linked models (not in Clipper): DefaultOutputSelectionPolicy,
        split (weights={model: share}), shadow (primary=model), exp3 or exp4; params are checked first."""
        self._admin("set_app_policy", {"name": app, "policy": policy, "params": params})
        logger.info("Application %s now selects models with policy %s", app, policy)

    def get_app_policy(self, app: str) -> dict[str, Any]:
        """The app's `policy`, its `params` and, with linked models, their current `weights`."""
        return dict(self._admin_json("get_app_policy", {"name": app}))

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

    def inspect_instance(self) -> dict[str, Any]:
        """The query frontend's metrics as Clipper gave them: a dict of counters, meters, ratio_counters and
        histograms, values as strings (`/metrics/json`; `/metrics` stays Prometheus text)."""
        self._require_connection()
        url = f"http://{self.cm.get_query_addr()}/metrics/json"
        r = self._http.get(url, timeout=REQUEST_TIMEOUT_S)
        if r.status_code != 200:
            raise ClipperException(f"Received error status code: {r.status_code} and message: {r.text}")
        metrics: dict[str, Any] = r.json()
        return metrics

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
