"""The cluster under test, started as users do: ClipperConnection over a LocalContainerManager."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

from clipper.admin.connection import ClipperConnection
from clipper.admin.exceptions import ClipperException
from clipper.admin.managers.local import LocalContainerManager
from clipper.admin.managers.process import ProcessRecord, free_port

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
        ports: dict[str, int] = {}
        for k in ("q", "m", "rpc", "redis"):
            ports[k] = _fresh_port(set(ports.values()))
        self.cm = LocalContainerManager(
            cluster_name=name,
            clipper_query_port=ports["q"],
            clipper_management_port=ports["m"],
            clipper_rpc_port=ports["rpc"],
            redis_port=ports["redis"],
            state_dir=state_dir,
        )
        self.conn = ClipperConnection(self.cm)
        self.extra: list[tuple[str, subprocess.Popen[bytes]]] = []  # (role-like label, process)

    def start(self) -> None:
        """Start with the prediction cache off, so every query reaches a container."""
        self.conn.start_clipper(cache_size=0)

    @property
    def query_url(self) -> str:
        return f"http://{self.cm.get_query_addr()}"

    def deploy(
        self, app: str, model: str, function: str, batch_size: int, slo_micros: int = SLO_MICROS
    ) -> None:
        """An app linked to a model served by `models:<function>` with the given batch_size."""
        self.conn.register_application(app, "doubles", "-1", slo_micros)
        self.conn.deploy_model(model, "1", "doubles", f"models:{function}", batch_size=batch_size)
        self.conn.link_model_to_app(app, model)
        self.conn.wait_for_model(model, "1")
        _wait_answer(f"{self.query_url}/{app}/predict", function)

    def pids(self) -> dict[str, int]:
        """Role -> pid of every live process (redis, management, query-<n>, model-<m>-1-<n>, ...)."""
        out = {r.role: r.pid for r in self.cm.live_records()}
        out |= {label: p.pid for label, p in self.extra if p.poll() is None}
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

    def add_frontend(self, model: str) -> str:
        """A second query frontend on the same HTTP port (SO_REUSEPORT), with `model` served through it.

        Uses the manager's set_num_frontends when it exists, else starts the process by hand; if the
        model's container does not connect to the new frontend by itself, one more replica dials it.
        """
        setter = getattr(self.cm, "set_num_frontends", None)
        if setter is not None:
            setter(2)
            rpc_port = max(self.cm.frontends(), key=lambda r: r.role).ports["rpc"]
            how = "second frontend started by LocalContainerManager.set_num_frontends(2)"
        else:
            rpc_port = self._spawn("clipper.frontends.query", self._query_record().env, "CLIPPER_RPC_PORT")
            how = "second frontend started by hand (python -m clipper.frontends.query, same HTTP port)"
        try:
            self.conn.wait_for_model(model, "1", num_replicas=2, timeout_s=15)
            return f"{how}; the existing container connected to both frontends"
        except ClipperException:
            pass
        replica = next(r for r in self.cm.live_records() if r.model_name == model)
        self._spawn("clipper.runtime", replica.env | {"CLIPPER_PORT": str(rpc_port)}, None)
        self.conn.wait_for_model(model, "1", num_replicas=2, timeout_s=30)
        return f"{how}; the container did not connect to it, so one more replica dials the new frontend"

    def _query_record(self) -> ProcessRecord:
        return next(r for r in self.cm.live_records() if r.role.startswith("query"))

    def _spawn(self, module: str, clipper_env: dict[str, str], rpc_var: str | None) -> int:
        """Start `python -m module` with the given CLIPPER_ variables (and a fresh RPC port in `rpc_var`)."""
        rpc_port = _fresh_port({p for r in self.cm.live_records() for p in r.ports.values()})
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPPER_")} | clipper_env
        if rpc_var:
            env[rpc_var] = str(rpc_port)
        model = clipper_env.get("CLIPPER_MODEL_NAME")
        label = f"model-{model}-1-x{len(self.extra)}" if model else f"query-x{len(self.extra)}"
        with open(self.cm.state_dir / f"{label}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log, stderr=log)
        self.extra.append((label, proc))
        return rpc_port

    def stop(self) -> None:
        """Stop everything this cluster started, extra processes first."""
        for _, p in self.extra:
            if p.poll() is None:
                p.terminate()
        for _, p in self.extra:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.cm.stop_all(graceful=True)


def _fresh_port(taken: set[int]) -> int:
    port = free_port()
    while port in taken:
        port = free_port()
    return port


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
