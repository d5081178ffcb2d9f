"""The cluster under test, started as users do: ClipperConnection over a LocalContainerManager."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import requests

from clipper.admin.connection import ClipperConnection
from clipper.admin.managers.local import LocalContainerManager
from clipper.admin.managers.process import free_port

logger = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent
SLO_MICROS = 100_000
_METRIC = re.compile(r"^(\w+)\{([^}]*)\} ([\d.e+-]+)$")


class BenchCluster:
    """One local cluster (Redis, management, query frontend(s), model replicas) on free ports."""

    def __init__(self, state_dir: Path, name: str = "bench") -> None:
        # The replicas import bench/models.py by "models:<function>".
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH")) if p
        )
        self.cm = LocalContainerManager(
            cluster_name=name,
            clipper_query_port=free_port(),
            clipper_management_port=free_port(),
            clipper_rpc_port=free_port(),
            redis_port=free_port(),
            state_dir=state_dir,
        )
        self.conn = ClipperConnection(self.cm)

    def start(self) -> None:
        """Start with the prediction cache off, so every query reaches a container."""
        self.conn.start_clipper(cache_size=0)

    @property
    def query_url(self) -> str:
        return f"http://{self.cm.get_query_addr()}"

    def deploy(self, model: str, function: str, batch_size: int, slo_micros: int = SLO_MICROS) -> None:
        """An app and a model, both named `model`, served by `models:<function>` with `batch_size`."""
        self.conn.register_application(model, "doubles", "-1", slo_micros)
        self.conn.deploy_model(model, "1", "doubles", f"models:{function}", batch_size=batch_size)
        self.conn.link_model_to_app(model, model)
        self.conn.wait_for_model(model, "1")
        _wait_answer(f"{self.query_url}/{model}/predict", function)

    def pids(self) -> dict[str, int]:
        """Role -> pid of every live process (redis, management, query-<n>, model-<m>-1-<n>, ...)."""
        out = {r.role: r.pid for r in self.cm.live_records()}
        return out

    def metrics(self) -> dict[tuple[str, str], float]:
        """(name, labels) -> value from the query frontend's /metrics (one frontend answers per call)."""
        text = requests.get(f"{self.query_url}/metrics", timeout=5).text
        out = {}
        for line in text.splitlines():
            m = _METRIC.match(line)
            if m:
                out[(m.group(1), m.group(2))] = float(m.group(3))
        return out

    def set_frontends(self, count: int, model: str) -> None:
        """Run `count` query frontends on the query port; wait until `model`'s container joined each."""
        self.cm.set_num_frontends(count)
        self.conn.wait_for_model(model, "1", num_replicas=count, timeout_s=30)

    def stop(self) -> None:
        """Stop every process of the cluster."""
        self.cm.stop_all(graceful=True)


def _wait(cond: object, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _wait_answer(url: str, function: str) -> None:
    """Wait until the app answers with a real (non-default) prediction."""
    body = {"input": [0.5] * (784 if function.startswith("dense") else 2)}

    def ok() -> bool:
        try:
            r = requests.post(url, json=body, timeout=5)
            return r.status_code == 200 and r.json().get("default") is False
        except requests.RequestException:
            return False

    _wait(ok, f"{url} to answer a prediction", 60)
