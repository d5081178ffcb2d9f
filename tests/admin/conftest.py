"""A real local cluster (Redis, both frontends, model processes) in a temp state dir on free ports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from clipper.admin import ClipperConnection, LocalContainerManager
from tests.conftest import free_port


def make_manager(state_dir: Path, name: str | None = None) -> LocalContainerManager:
    """A manager for a fresh cluster on free ports, its state under `state_dir`."""
    return LocalContainerManager(
        cluster_name=name or f"test-{uuid.uuid4().hex[:8]}",
        clipper_query_port=free_port(),
        clipper_management_port=free_port(),
        clipper_rpc_port=free_port(),
        redis_port=free_port(),
        state_dir=state_dir,
    )


def predict_until(
    url: str, body: dict[str, Any], accept: Callable[[Any], bool], timeout_s: float = 30.0
) -> Any:
    """POST until `accept(answer)`; the last answer is returned either way for the assertion to show."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = requests.post(url, json=body, timeout=10).json()
        if accept(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClipperConnection]:
    """One running cluster shared by a test module; every process is stopped afterwards."""
    manager = make_manager(tmp_path_factory.mktemp("cluster"))
    conn = ClipperConnection(manager)
    conn.start_clipper()
    try:
        yield conn
    finally:
        manager.stop_all()
