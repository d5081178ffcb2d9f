"""A management frontend process next to the query frontends of tests/frontends/conftest.py, and load."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, ping_status, wait_until
from tests.frontends.conftest import QueryCluster, make_cluster  # noqa: F401  (fixture re-used here)


class ManagementProcess:
    """`python -m clipper.frontends.management` on a free port, on the test's Redis."""

    def __init__(self, redis_url: str, tmp: Path, **env: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self._log = open(tmp / "management.log", "wb")
        full_env = {"CLIPPER_REDIS_URL": redis_url, "CLIPPER_MANAGEMENT_PORT": port, **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clipper.frontends.management"],
            env={**os.environ, **full_env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._up, what="the management frontend's /admin/ping")

    def _up(self) -> bool:
        assert self.proc.poll() is None, "the management frontend exited; see management.log"
        return ping_status(self.url, timeout_s=1) == 200

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


@pytest.fixture
def management_process(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., ManagementProcess]]:
    started: list[ManagementProcess] = []

    def start(**env: str) -> ManagementProcess:
        started.append(ManagementProcess(redis_url, tmp_path, **env))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


class Load:
    """Predict requests from a background thread, round-robin over `urls`, until stopped; each input is
    sent twice, so about half are cache hits."""

    def __init__(self, urls: list[str], headers: dict[str, str] | None = None) -> None:
        self.sent = 0
        self._urls = urls
        self._headers = headers or {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with requests.Session() as session:
            for k in itertools.count():
                if self._stop.is_set():
                    return
                url = self._urls[k % len(self._urls)]
                try:
                    session.post(url, json={"input": [float(k // 2)]}, headers=self._headers, timeout=5)
                except requests.RequestException:
                    continue  # a frontend the test killed; the others keep the load up
                self.sent += 1
                self._stop.wait(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def load() -> Iterator[Callable[..., Load]]:
    loads: list[Load] = []

    def start(urls: list[str], headers: dict[str, str] | None = None) -> Load:
        loads.append(Load(urls, headers))
        return loads[-1]

    yield start
    for running in loads:
        running.stop()
