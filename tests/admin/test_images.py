"""Image builds on a real Docker engine: runtime image, model images, version check, registry push/pull."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from clipper.admin import images
from clipper.errors import ClipperError
from tests.admin.conftest import PACKAGE, ordinal_model
from tests.conftest import free_port


def test_model_image_name_as_clipper() -> None:
    assert images.model_image_name("c1", "m", "2") == "c1-m:2"
    assert images.model_image_name("c1", "m", "2", "127.0.0.1:5000/") == "127.0.0.1:5000/c1-m:2"


def test_clipper_role_images_are_recognised() -> None:
    assert images.is_clipper_role_image("clipper/query_frontend:0.4.1")
    assert images.is_clipper_role_image("clipper/python36-closure-container:0.4.1")
    assert images.is_clipper_role_image("localhost:5000/clipper/management_frontend")
    assert not images.is_clipper_role_image("me/my-model:1")


def test_model_dockerfile_installs_packages_only_when_given() -> None:
    plain = images.model_dockerfile("clipper/clipper:1", None)
    assert "pip install" not in plain
    assert plain.startswith("FROM clipper/clipper:1\n")
    assert "COPY model /model/" in plain
    assert 'pip install "inflection" "six==1.16.0"' in images.model_dockerfile(
        "b", ["inflection", "six==1.16.0"]
    )


def test_pip_index_args_leave_out_local_indexes() -> None:
    for urls in images.pip_index_args().values():
        assert all(u.startswith(("http://", "https://")) for u in urls.split())


@pytest.mark.docker
def test_runtime_image_runs_every_role(docker_client: docker.DockerClient, runtime_image: str) -> None:
    probe = "import clipper.frontends.query, clipper.frontends.management, clipper.runtime, cloudpickle"
    docker_client.containers.run(runtime_image, ["python", "-c", probe], remove=True, network_mode="none")
    out = docker_client.containers.run(
        runtime_image, ["/usr/bin/redis-server", "--version"], remove=True, network_mode="none"
    )
    assert b"Redis server" in out
    python, pickler = images.image_versions(docker_client, runtime_image)
    assert (python, pickler) == (f"{sys.version_info.major}.{sys.version_info.minor}", version("cloudpickle"))


@pytest.mark.docker
def test_model_image_has_package_and_model(
    docker_client: docker.DockerClient, runtime_image: str, tmp_path: Path
) -> None:
    image = images.model_image_name(f"t{os.getpid()}", "ordinal", "1")
    images.build_model_image(
        docker_client, image, ordinal_model(tmp_path), runtime_image, [PACKAGE], quiet=True
    )
    try:
        probe = "import inflection, os, clipper.runtime.closure as c; print(sorted(os.listdir('/model')))"
        out = docker_client.containers.run(image, ["python", "-c", probe], remove=True, network_mode="none")
        assert "func.pkl" in out.decode() and "metadata.json" in out.decode()
    finally:
        docker_client.images.remove(image, force=True)


@pytest.mark.docker
def test_mismatched_closure_is_refused_before_building(
    docker_client: docker.DockerClient, runtime_image: str, tmp_path: Path
) -> None:
    model_dir = ordinal_model(tmp_path)
    (model_dir / "metadata.json").write_text(json.dumps({"python": "3.6", "cloudpickle": "0.5.3"}))
    with pytest.raises(
        ClipperError, match=r"serialized with Python 3\.6 and cloudpickle 0\.5\.3.*Serialize it again"
    ):
        images.build_model_image(docker_client, "never-built:1", model_dir, runtime_image, quiet=True)
    assert not images.image_exists(docker_client, "never-built:1")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1:<free port>, storing in a temp dir."""
    binary = shutil.which("docker-registry")
    if binary is None:
        if os.environ.get("CLIPPER_TEST_REQUIRE_DOCKER") == "1":
            pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (tmp_path / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "registry.log").read_text()) from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.mark.docker
def test_model_image_pushed_and_pulled(
    docker_client: docker.DockerClient, runtime_image: str, registry: str, tmp_path: Path
) -> None:
    image = images.model_image_name(f"t{os.getpid()}", "pushed", "1", registry)
    images.build_model_image(docker_client, image, ordinal_model(tmp_path), runtime_image, quiet=True)
    images.push_image(docker_client, image, quiet=True)
    docker_client.images.remove(image, force=True)
    assert not images.image_exists(docker_client, image)
    repository, _, tag = image.rpartition(":")
    docker_client.images.pull(repository, tag=tag)
    try:
        out = docker_client.containers.run(image, ["ls", "/model"], remove=True, network_mode="none")
        assert b"func.pkl" in out
    finally:
        docker_client.images.remove(image, force=True)
