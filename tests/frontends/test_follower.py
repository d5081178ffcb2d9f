"""ConfigFollower against a real Redis that dies and comes back: changes made afterwards still arrive."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from clipper.config.redis_server import start_redis
from clipper.config.store import ConfigStore
from clipper.errors import UnknownApp
from clipper.frontends.follower import ConfigFollower
from clipper.frontends.metrics import QueryMetrics
from clipper.frontends.query import StoreRecorder
from clipper.query.processor import QueryProcessor
from clipper.schema import App
from tests.conftest import free_port


class OwnRedis:
    """A redis-server of this test's own (the session's must not die), restartable on its port and data."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return start_redis(self.port, self.directory / "data", self.directory / "redis.log")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def restart(self) -> None:
        self.proc = self._start()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    yield server
    server.kill()


def app(name: str) -> App:
    return App(name=name, input_type="doubles", default_output="-1.0", latency_slo_micros=20_000)


async def until_routed(processor: QueryProcessor, name: str, timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                processor.route(name)
                return
            except UnknownApp:
                await asyncio.sleep(0.02)


async def test_follower_resubscribes_and_reloads_after_redis_restarts(own_redis: OwnRedis) -> None:
    store = ConfigStore(f"redis://127.0.0.1:{own_redis.port}")
    processor = QueryProcessor(
        None,
        StoreRecorder(store, "test"),
        QueryMetrics(CollectorRegistry(), "test"),
        asyncio.get_running_loop(),
        cache_size_bytes=1 << 20,
        queue_max_entries=100,
        max_batch_size=8,
    )
    follower = ConfigFollower(store, processor, lambda frontends: None)
    await store.start()
    try:
        await store.add_app(app("before"))
        await follower.start()
        await until_routed(processor, "before")

        own_redis.kill()
        # The sleep is the point: Redis stays away longer than any client-side retry waits, so the
        # subscription fails for good and only the follower's own resubscribing can bring it back.
        await asyncio.sleep(1.5)
        own_redis.restart()
        await store.add_app(app("after"))  # made after the restart: only a live subscription sees it
        await until_routed(processor, "after")
        processor.route("before")  # the snapshot survived (AOF) and was reloaded
    finally:
        await follower.stop()
        processor.shutdown()
        await store.close()
