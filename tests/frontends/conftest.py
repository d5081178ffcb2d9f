"""A query frontend process on free ports, config written through the store, model runtimes as processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest
import redis
import requests

from clipper.config.store import ConfigStore
from clipper.frontends.management import Management
from clipper.frontends.management_http import build_management_app
from clipper.schema import App, Model
from tests.conftest import free_port, wait_until

TESTS_DIR = Path(__file__).resolve().parent.parent


class QueryCluster:
    """A running query frontend plus helpers to configure it and start model containers."""

    def __init__(self, redis_url: str, tmp: Path, **settings: str) -> None:
        self.redis_url = redis_url
        self.tmp = tmp
        self.http_port = int(settings.get("CLIPPER_HTTP_PORT") or free_port())  # frontends may share one
        self.rpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        env = {
            "CLIPPER_REDIS_URL": redis_url,
            "CLIPPER_HTTP_PORT": str(self.http_port),
            "CLIPPER_RPC_PORT": str(self.rpc_port),
            **settings,
        }
        self.redis = redis.Redis.from_url(redis_url, db=3, decode_responses=True)
        self.frontend = self._spawn([sys.executable, "-m", "clipper.frontends.query"], env, "frontend")
        try:
            wait_until(self._healthy, what="the query frontend's /health")
        except BaseException:
            self.close()  # no fixture holds this cluster yet: a frontend that never got healthy would leak
            raise

    def _spawn(self, cmd: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}-{len(self.procs)}.log", "wb")
        # An inherited PYTHONPATH stays in front: a worktree's `src` then wins over the editable install.
        inherited = os.environ.get("PYTHONPATH")
        path = os.pathsep.join(filter(None, [inherited, str(TESTS_DIR), str(TESTS_DIR.parent)]))
        full_env = {**os.environ, "PYTHONPATH": path, **env}
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def _store(self, fn: Callable[[ConfigStore], object]) -> None:
        async def run() -> None:
            async with ConfigStore(self.redis_url) as store:
                await fn(store)  # type: ignore[misc]

        asyncio.run(run())

    def app(
        self,
        name: str,
        input_type: str = "doubles",
        model: str | None = None,
        *,
        default: str = "-1.0",
        slo_micros: int = 2_000_000,
        on_overload: Literal["reject", "default"] = "reject",
    ) -> None:
        """Register an app (and its link); wait until the frontend knows it."""

        async def write(store: ConfigStore) -> None:
            await store.add_app(App(name=name, input_type=input_type, default_output=default,
                                    latency_slo_micros=slo_micros, on_overload=on_overload))  # fmt: skip
            if model is not None:
                await store.add_link(name, model)

        self._store(write)
        wait_until(lambda: self.post(name, {"input_batch": []}).status_code == 200, what=f"app {name}")

    def model(self, name: str, version: str = "1", input_type: str = "doubles", batch_size: int = -1) -> None:
        self._store(lambda s: s.add_model(Model(model_name=name, model_version=version, input_type=input_type,
                                                batch_size=batch_size)))  # fmt: skip

    def set_version(self, name: str, version: str) -> None:
        self._store(lambda s: s.set_current_version(name, version))

    def container(
        self, model: str, function: str, version: str = "1", input_type: str = "doubles", **env: str
    ) -> subprocess.Popen[bytes]:
        """Start `python -m clipper.runtime` serving `clipper_test_models.<function>`; wait for it."""
        before = self.replicas(model, version)
        proc = self._spawn(
            [sys.executable, "-m", "clipper.runtime"],
            {
                "CLIPPER_MODEL_NAME": model,
                "CLIPPER_MODEL_VERSION": version,
                "CLIPPER_INPUT_TYPE": input_type,
                "CLIPPER_PORT": str(self.rpc_port),
                "CLIPPER_PREDICT_MODULE": f"clipper_test_models:{function}",
                **env,
            },
            f"container-{model}",
        )
        wait_until(lambda: self.replicas(model, version) > before, what=f"{model}:{version} to register")
        return proc

    def replicas(self, model: str, version: str) -> int:
        return len(list(self.redis.scan_iter(f"{model},{version},*")))

    def post(self, app: str, body: object, timeout: float = 30) -> requests.Response:
        return requests.post(f"{self.url}/{app}/predict", json=body, timeout=timeout)

    def metrics(self) -> str:
        return requests.get(f"{self.url}/metrics", timeout=5).text

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.redis.close()


@pytest.fixture
def make_cluster(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., QueryCluster]]:
    clusters: list[QueryCluster] = []

    def make(**settings: str) -> QueryCluster:
        cluster = QueryCluster(redis_url, tmp_path, **settings)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()


@pytest.fixture
def cluster(make_cluster: Callable[..., QueryCluster]) -> QueryCluster:
    return make_cluster()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[ConfigStore]:
    """A second store on the same Redis, playing the query frontends (container records, learned state)."""
    async with ConfigStore(redis_url) as s:
        yield s


@pytest.fixture
async def management(redis_url: str) -> AsyncIterator[Management]:
    m = Management(ConfigStore(redis_url))
    await m.connect()
    yield m
    await m.close()


@pytest.fixture
async def client(management: Management) -> AsyncIterator[httpx.AsyncClient]:
    """The management app in process (ASGI), on the real Redis."""
    transport = httpx.ASGITransport(app=build_management_app(management))
    async with httpx.AsyncClient(transport=transport, base_url="http://mgmt") as c:
        yield c
