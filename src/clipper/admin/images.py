"""Docker image builds: the one runtime image every cluster role runs, and model images on top of it.

Nothing is pulled: the base image is made offline (scripts/base-image.sh) and pip inside a build reaches the
same index as this machine's pip, with this machine's CA bundle and host networking.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import docker.errors
from docker import DockerClient

import clipper
from clipper.admin import model_packages
from clipper.admin.clipper_images import NOOP_PREDICT_MODULE, WELL_KNOWN, ImageKind, log_mapping
from clipper.admin.model_packages import FrameworkInstall
from clipper.admin.progress import status_line
from clipper.errors import ClipperError
from clipper.runtime.closure import python_version, read_metadata, versions_match

logger = logging.getLogger(__name__)

BASE_IMAGE = os.environ.get("CLIPPER_BASE_IMAGE", "clipper/base:bookworm")
RUNTIME_REPOSITORY = "clipper/clipper"
PYTHON_LABEL = "ai.clipper.python.version"
CLOUDPICKLE_LABEL = "ai.clipper.cloudpickle.version"
STANDS_FOR_LABEL = "ai.clipper.stands_for"  # on our images tagged with a Clipper image name: its kind
RUNTIME_ID_LABEL = "ai.clipper.runtime.id"  # ... and the runtime image it was built on
CA_BUNDLE = Path(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))
WHEELS_DIR = "wheels"  # in a model image's build context: the model's framework wheels
# Image names Clipper 0.4 users pass; all of them are served by our runtime image.
CLIPPER_ROLE_IMAGES = ("query_frontend", "management_frontend", "frontend-exporter", "closure-container")


def runtime_image() -> str:
    """Tag of the runtime image of this clipper version."""
    return f"{RUNTIME_REPOSITORY}:{clipper.__version__}"


def is_clipper_role_image(image: str) -> bool:
    """True for Clipper 0.4's per-role image names (`clipper/query_frontend:0.4.1`, ...) and for the
    deployers' `base_image="default"`."""
    if image == "default":
        return True
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return any(repository.endswith(role) for role in CLIPPER_ROLE_IMAGES)


def project_dir() -> Path:
    """The source tree this package was installed from (editable install); the runtime image's context."""
    root = Path(clipper.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "src" / "clipper").is_dir():
        raise ClipperError(
            f"No clipper source tree at {root}; build the runtime image from a checkout "
            "(pip install -e . there) or pass an existing image."
        )
    return root


def pip_index_args() -> dict[str, str]:
    """This machine's pip index settings that a build can reach (http(s) only; file:// stays on the host)."""
    found: dict[str, list[str]] = {"PIP_INDEX_URL": [], "PIP_EXTRA_INDEX_URL": []}
    keys = {"index-url": "PIP_INDEX_URL", "extra-index-url": "PIP_EXTRA_INDEX_URL"}
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        name, _, value = line.partition("=")
        key = keys.get(name.rsplit(".", 1)[-1])
        if key:
            found[key].extend(value.strip().strip("'\"").split())
    for key in found:
        found[key].extend(os.environ.get(key, "").split())
    return {
        key: " ".join(dict.fromkeys(u for u in urls if u.startswith(("http://", "https://"))))
        for key, urls in found.items()
        if any(u.startswith(("http://", "https://")) for u in urls)
    }


def image_exists(client: DockerClient, image: str) -> bool:
    """Whether the engine has `image` locally."""
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def is_ours(client: DockerClient, image: str) -> bool:
    """Whether `image` is one of ours standing for a Clipper image (ensure_clipper_image made it)."""
    return STANDS_FOR_LABEL in (client.images.get(image).labels or {})


def build_runtime_image(client: DockerClient, tag: str | None = None, *, quiet: bool = False) -> str:
    """Build the runtime image from this source tree on the offline base image; return its tag."""
    tag = tag or runtime_image()
    if not image_exists(client, BASE_IMAGE):
        raise ClipperError(f"Base image {BASE_IMAGE} is missing; run scripts/base-image.sh first.")
    root = project_dir()
    old = client.images.get(tag).id if image_exists(client, tag) else None
    with tempfile.TemporaryDirectory(prefix="clipper-build-") as tmp:
        ctx = Path(tmp)
        shutil.copy(root / "pyproject.toml", ctx)
        shutil.copy(root / "README.md", ctx)
        shutil.copytree(root / "src", ctx / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy(CA_BUNDLE, ctx / "ca-certificates.crt")
        shutil.copy(root / "dockerfiles" / "runtime.Dockerfile", ctx / "Dockerfile")
        args = {
            "BASE_IMAGE": BASE_IMAGE,
            "CLOUDPICKLE_VERSION": metadata.version("cloudpickle"),
            "PYTHON_VERSION": python_version(),
            **pip_index_args(),
        }
        _build(client, str(ctx), tag, args, quiet=quiet)
    if old and client.images.get(tag).id != old:
        _remove_quietly(client, old)
    return tag


def _remove_quietly(client: DockerClient, image_id: str) -> None:
    """Drop a superseded image; keep it when a container still uses it."""
    try:
        client.images.remove(image_id)
    except docker.errors.APIError as e:
        logger.debug("Keeping %s: %s", image_id, e)


def ensure_runtime_image(client: DockerClient) -> str:
    """The runtime image's tag, building it first when the engine does not have it."""
    tag = runtime_image()
    if not image_exists(client, tag):
        logger.info("Building %s (not found locally)", tag)
        build_runtime_image(client, tag)
    return tag


def ensure_clipper_image(client: DockerClient, image: str, kind: ImageKind) -> str:
    """Make Clipper's image name `image` a local image of ours for `kind`, built on the runtime image.

    One image per kind and runtime image, tagged with every Clipper name used for it, so Docker's
    `ancestor=<clipper name>` filter finds exactly the containers of that kind (and of models built on it).
    """
    runtime = client.images.get(ensure_runtime_image(client))
    labels = {STANDS_FOR_LABEL: kind.value, RUNTIME_ID_LABEL: runtime.id}
    ours_tag = f"{RUNTIME_REPOSITORY}-{kind.value}:{clipper.__version__}"
    found = [  # model images built on it inherit its labels: only the image under our own tag is it
        i for i in client.images.list(filters={"label": [f"{k}={v}" for k, v in labels.items()]})
        if ours_tag in i.tags
    ]  # fmt: skip
    if not found:
        lines = [f"FROM {runtime_image()}", *(f"LABEL {k}={json.dumps(v)}" for k, v in labels.items())]
        if kind is ImageKind.NOOP:
            lines.append(f"ENV CLIPPER_PREDICT_MODULE={NOOP_PREDICT_MODULE}")
        build_from_dockerfile(client, "\n".join(lines) + "\n", ours_tag)
    ours = found[0] if found else client.images.get(ours_tag)
    known = {f"clipper/{name}:{clipper.__version__}" for name in WELL_KNOWN[kind]}
    for name in {ours_tag, image, *known} - {"default", *ours.tags}:
        repository, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
        ours.tag(repository, tag or "latest")
    log_mapping(image, kind, f"{ours_tag} ({ours.short_id}, on {runtime_image()})")
    return ours_tag if image == "default" else image


def build_from_dockerfile(client: DockerClient, dockerfile: str, tag: str) -> None:
    """Build `tag` from a Dockerfile alone (no context files)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add_dockerfile(tar, dockerfile)
    buf.seek(0)
    _build(client, buf, tag, {}, quiet=True, custom_context=True)


def image_versions(client: DockerClient, image: str) -> tuple[str, str]:
    """(python major.minor, cloudpickle version) inside `image`, from its labels or else from the one probe
    of the image that framework packages are resolved with (model_packages.image_environment)."""
    labels = client.images.get(image).labels or {}
    if PYTHON_LABEL in labels and CLOUDPICKLE_LABEL in labels:
        return labels[PYTHON_LABEL], labels[CLOUDPICKLE_LABEL]
    env = model_packages.image_environment(client, image)
    pickler = env.installed().get("cloudpickle")
    if pickler is None:
        raise ClipperError(f"Image {image} has no Python with cloudpickle.")
    return env.python, pickler


def check_closure_versions(client: DockerClient, model_data_path: Path, image: str) -> None:
    """Refuse to build when the closure was pickled by another Python or cloudpickle than the image runs."""
    saved = read_metadata(model_data_path)
    if saved is None:
        return
    image_python, image_pickler = image_versions(client, image)
    if not versions_match(saved, image_python, image_pickler):
        python, pickler = saved.get("python", ""), saved.get("cloudpickle", "")
        raise ClipperError(
            f"The model in {model_data_path} was serialized with Python {python} and cloudpickle {pickler}, "
            f"but {image} runs Python {image_python} with cloudpickle {image_pickler}. Serialize it again "
            f"from Python {image_python} with cloudpickle=={image_pickler}, or build a base image with "
            f"Python {python} and cloudpickle {pickler} and pass it as base_image."
        )


def model_image_name(cluster: str, name: str, version: str, container_registry: str | None = None) -> str:
    """`[<registry>/]<cluster>-<name>:<version>`, as Clipper names model images."""
    repository = f"{cluster}-{name}"
    if container_registry:
        repository = f"{container_registry.rstrip('/')}/{repository}"
    return f"{repository}:{version}"


def model_dockerfile(
    base_image: str, pkgs_to_install: Iterable[str] | None, frameworks: FrameworkInstall | None = None
) -> str:
    """Dockerfile of a model image: the runtime image, the model's framework packages installed offline
    from the context's `wheels/` (in a stage of their own, so the wheels are not kept and the layer is
    shared by every model with the same packages), optional pip packages, the model directory."""
    lines = []
    if frameworks is not None:
        wheels = f"/tmp/clipper-{WHEELS_DIR}"
        lines += [
            f"FROM {base_image} AS frameworks",
            f"COPY {WHEELS_DIR} {wheels}/",
            f"RUN python -m pip install --no-index --find-links {wheels} --root /staged"
            f" -r {wheels}/{model_packages.REQUIREMENTS_FILE} -c {wheels}/{model_packages.CONSTRAINTS_FILE}",
        ]
    lines += [f"FROM {base_image}", "ARG PIP_INDEX_URL", "ARG PIP_EXTRA_INDEX_URL"]
    if frameworks is not None:
        if frameworks.replaces:
            lines.append(f"RUN python -m pip uninstall -y {' '.join(frameworks.replaces)}")
        label = json.dumps(json.dumps(frameworks.packages, sort_keys=True))
        lines += ["COPY --from=frameworks /staged/ /", f"LABEL {model_packages.PACKAGES_LABEL}={label}"]
    pkgs = [p for p in (pkgs_to_install or []) if p]
    if pkgs:
        quoted = " ".join(json.dumps(p) for p in pkgs)
        lines.append(
            'RUN [ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL; '
            '[ -n "${PIP_EXTRA_INDEX_URL:-}" ] || unset PIP_EXTRA_INDEX_URL; '
            f"pip install {quoted}"
        )
    lines += ["COPY model /model/", "ENV CLIPPER_MODEL_PATH=/model"]
    return "\n".join(lines) + "\n"


def build_model_image(
    client: DockerClient,
    image: str,
    model_data_path: str | Path,
    base_image: str,
    pkgs_to_install: Iterable[str] | None = None,
    *,
    quiet: bool = False,
) -> str:
    """Build `image` from `base_image` with the model directory at /model and exactly the framework
    packages it records; return `image`. An image without those versions is removed and refused."""
    model_dir = Path(model_data_path).resolve()
    if not model_dir.is_dir():
        raise ClipperError(f"Model directory {model_dir} does not exist.")
    check_closure_versions(client, model_dir, base_image)
    packages = model_packages.recorded_packages(model_dir)
    frameworks = model_packages.plan_install(client, base_image, packages, quiet=quiet) if packages else None
    with tempfile.TemporaryFile() as context:  # wheels can be hundreds of MB: not in memory
        with tarfile.open(fileobj=context, mode="w") as tar:
            _add_dockerfile(tar, model_dockerfile(base_image, pkgs_to_install, frameworks))
            if frameworks is not None:
                tar.add(frameworks.directory, arcname=WHEELS_DIR, filter=_reset_mtime)
            tar.add(model_dir, arcname="model", filter=_reset_mtime)
        context.seek(0)
        _build(client, context, image, pip_index_args(), quiet=quiet, custom_context=True)
    if packages:
        try:
            model_packages.check_image_packages(client, image, packages)
        except ClipperError:
            _remove_quietly(client, image)
            raise
    return image


def push_image(client: DockerClient, image: str, *, quiet: bool = False) -> None:
    """Push `image` to the registry its name starts with; raise ClipperError on any error."""
    repository, _, tag = image.rpartition(":")
    stream = client.api.push(repository, tag=tag, stream=True, decode=True)
    _follow(stream, f"push {image}", quiet=quiet)


def _add_dockerfile(tar: tarfile.TarFile, dockerfile: str) -> None:
    """Put `dockerfile` into a build context as its Dockerfile."""
    data = dockerfile.encode()
    info = tarfile.TarInfo("Dockerfile")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _reset_mtime(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Stable metadata so an unchanged model directory hits the build cache."""
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _build(
    client: DockerClient,
    context: Any,
    tag: str,
    buildargs: dict[str, str],
    *,
    quiet: bool,
    custom_context: bool = False,
) -> None:
    logger.info("Building image %s", tag)
    kwargs: dict[str, Any] = {"fileobj": context} if custom_context else {"path": context}
    stream = client.api.build(
        tag=tag,
        buildargs=buildargs,
        network_mode="host",
        rm=True,
        forcerm=True,
        decode=True,
        custom_context=custom_context,
        **kwargs,
    )
    _follow(stream, f"build {tag}", quiet=quiet)


def _follow(stream: Iterator[dict[str, Any]], title: str, *, quiet: bool) -> None:
    """Show a Docker JSON stream as one progress line; raise ClipperError with the tail on error."""
    tail: list[str] = []
    with status_line(title, quiet=quiet) as show:
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message", chunk["error"])
                raise ClipperError(f"docker {title} failed: {detail}\n" + "".join(tail[-20:]))
            text = chunk.get("stream") or chunk.get("status") or ""
            if text.strip():
                tail.append(text if text.endswith("\n") else text + "\n")
                show(text)
    logger.debug("docker %s done", title)
