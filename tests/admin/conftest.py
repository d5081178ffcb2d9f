"""A real local cluster (Redis, both frontends, model processes) in a temp state dir on free ports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests

from clipper.admin import ClipperConnection, LocalContainerManager, images
from clipper.admin.managers.docker import DockerContainerManager
from clipper.runtime.closure import save_closure
from tests.conftest import free_port, require_or_skip


def _free_ports() -> dict[str, int]:
    return {
        "clipper_query_port": free_port(),
        "clipper_management_port": free_port(),
        "clipper_rpc_port": free_port(),
        "redis_port": free_port(),
    }


def make_manager(state_dir: Path, name: str | None = None, **options: Any) -> LocalContainerManager:
    """A fresh cluster on free ports, its state under `state_dir`; `options` for auth or other ports."""
    return LocalContainerManager(
        cluster_name=name or f"test-{uuid.uuid4().hex[:8]}", state_dir=state_dir, **(_free_ports() | options)
    )


def new_docker_manager(**options: Any) -> DockerContainerManager:
    """A fresh Docker cluster on free ports; `options` for networks, auth or Prometheus. Its secrets go
    under CLIPPER_HOME, which the caller points at a temporary directory."""
    return DockerContainerManager(cluster_name=f"t-{uuid.uuid4().hex[:8]}", **(_free_ports() | options))


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


@contextmanager
def running_cluster(state_dir: Path, **options: Any) -> Iterator[ClipperConnection]:
    """A started cluster of `make_manager(state_dir, **options)`; every process is stopped on leaving."""
    manager = make_manager(state_dir, **options)
    conn = ClipperConnection(manager)
    conn.start_clipper()
    try:
        yield conn
    finally:
        manager.stop_all()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClipperConnection]:
    """One running cluster shared by a test module; every process is stopped afterwards."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as conn:
        yield conn


PACKAGE = "inflection"  # small, pure Python, not a dependency of clipper


def engine() -> docker.DockerClient:
    """A client of the local engine; skip (or fail with CLIPPER_TEST_REQUIRE_DOCKER=1) when none answers."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        require_or_skip(
            f"no Docker engine answers: {e}", "CLIPPER_TEST_REQUIRE_DOCKER", "run scripts/docker-engine.sh"
        )
    return client


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return engine()


DockerManagers = Callable[..., DockerContainerManager]


@pytest.fixture
def make_docker_manager(
    docker_client: docker.DockerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DockerManagers]:
    """Managers of fresh Docker clusters (`new_docker_manager`); every cluster made is stopped and its
    state removed afterwards.

    CLIPPER_HOME is the test's directory, so cluster secrets stay there and other managers find them.
    """
    monkeypatch.setenv("CLIPPER_HOME", str(tmp_path / "home"))
    made: list[DockerContainerManager] = []

    def make(**options: Any) -> DockerContainerManager:
        made.append(new_docker_manager(**options))
        return made[-1]

    yield make
    for manager in made:
        manager.stop_all(graceful=False, remove_state=True)


@pytest.fixture(scope="session")
def runtime_image(docker_client: docker.DockerClient) -> str:
    """The runtime image of the current source, built once per session (cached layers when unchanged)."""
    return images.build_runtime_image(docker_client, quiet=True)


def ordinal_model(tmp_path: Path) -> Path:
    """A closure that needs PACKAGE, which only the model image installs."""

    def predict(inputs: list[object]) -> list[str]:
        import inflection

        return [inflection.ordinalize(len(x)) for x in inputs]  # type: ignore[arg-type]

    model_dir = tmp_path / "model"
    save_closure(predict, model_dir)
    return model_dir
