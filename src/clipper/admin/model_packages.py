"""The framework packages a model records (`packages` in metadata.json), made installable in a model image.

They are resolved on this machine, with its pip configuration (local wheel directories and indexes that a
`docker build` cannot see, e.g. the CPU build of torch), into wheels for the image's Python and platform.
The image installs them offline. Whatever the base image already has keeps its version: its own pins are
the constraints, and their wheels are not shipped again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker.errors
from docker import DockerClient
from pydantic import BaseModel, ValidationError

from clipper.admin.managers.process import ClientSettings
from clipper.admin.progress import status_line
from clipper.errors import ClipperError
from clipper.runtime.closure import METADATA_FILE, read_metadata
from clipper.runtime.frameworks import canonical_name

logger = logging.getLogger(__name__)

PACKAGES_LABEL = "ai.clipper.packages"  # on model images: the recorded {distribution: version} installed
REQUIREMENTS_FILE = "requirements.txt"
CONSTRAINTS_FILE = "constraints.txt"
# The environment's own installers: a framework may need a newer one (torch needs setuptools>=77), so they
# are the only distributions of the base image a model image may replace.
INSTALLERS = frozenset({"pip", "setuptools", "wheel"})
PIP_TIMEOUT_S = 900.0

_PROBE = """
import importlib.metadata as m, json, platform, sys
libc, libc_version = platform.libc_ver()
print(json.dumps({
    "implementation": sys.implementation.name,
    "python": "%d.%d" % sys.version_info[:2],
    "machine": platform.machine(),
    "glibc": libc_version if libc == "glibc" else None,
    "distributions": {d.metadata["Name"]: d.version for d in m.distributions() if d.metadata["Name"]},
}))
"""


class ImageEnvironment(BaseModel):
    """What decides which wheels an image can install, and what it already has."""

    implementation: str
    python: str  # major.minor
    machine: str
    glibc: str | None
    distributions: dict[str, str]  # name as installed -> version

    def installed(self) -> dict[str, str]:
        """{canonical name: version} of the image's distributions."""
        return {canonical_name(name): version for name, version in self.distributions.items()}


class FrameworkInstall(BaseModel):
    """Wheels resolved for one model image, in `directory` with requirements.txt and constraints.txt."""

    directory: Path
    packages: dict[str, str]  # recorded {distribution: version}
    replaces: list[str]  # installers of the base image that the wheels upgrade (uninstalled first)


def recorded_packages(model_dir: Path) -> dict[str, str]:
    """The `packages` a framework deployer recorded in the model directory's metadata.json ({} if none)."""
    saved = read_metadata(model_dir) or {}
    try:
        return _Packages.model_validate({"packages": saved.get("packages") or {}}).packages
    except ValidationError as e:
        raise ClipperError(
            f"{model_dir / METADATA_FILE}: 'packages' must map pip distribution names to exact versions, "
            f'e.g. {{"torch": "2.13.0+cpu"}} ({e}); redeploy the model with its deployer.'
        ) from None


class _Packages(BaseModel):
    packages: dict[str, str]


_environments: dict[str, ImageEnvironment] = {}


def image_environment(client: DockerClient, image: str) -> ImageEnvironment:
    """Python, platform and installed distributions of `image`, asked once per image id."""
    image_id = str(client.images.get(image).id)
    if image_id not in _environments:
        try:
            out = client.containers.run(
                image, ["python", "-c", _PROBE], remove=True, network_mode="none", entrypoint=""
            )
        except docker.errors.ContainerError as e:
            raise ClipperError(f"Image {image} has no working `python` to probe: {e}") from e
        _environments[image_id] = ImageEnvironment.model_validate_json(out.decode().strip().splitlines()[-1])
    return _environments[image_id]


def platforms(env: ImageEnvironment) -> list[str]:
    """pip `--platform` tags the image's glibc and machine accept, newest first."""
    if env.implementation != "cpython" or env.glibc is None:
        raise ClipperError(
            f"Framework packages are installed from manylinux wheels, which need CPython on glibc; this base "
            f"image runs {env.implementation} with libc {env.glibc or 'other than glibc'}. Use the runtime "
            "image (or one built on it) as base_image."
        )
    major, minor = (int(p) for p in env.glibc.split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{env.machine}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{legacy[m]}_{env.machine}" for m in legacy if m <= minor]
    return tags


def plan_install(
    client: DockerClient, base_image: str, packages: dict[str, str], *, quiet: bool = False
) -> FrameworkInstall | None:
    """Resolve `packages` for `base_image` into a cached wheel directory; None when the image has them all.

    Raises ClipperError when the base image has one of them in another version, or when they cannot be
    resolved next to the image's own pins.
    """
    env = image_environment(client, base_image)
    installed = env.installed()
    wanted = {canonical_name(name): version for name, version in packages.items()}
    clashes = {n: v for n, v in wanted.items() if n in installed and installed[n] != v}
    if clashes:
        found = ", ".join(f"{n} {installed[n]} (the model records {v})" for n, v in clashes.items())
        raise ClipperError(
            f"The base image {base_image} already has {found}; a model image keeps its base's versions. "
            "Save the model with the versions the image has, or pass a base_image without them."
        )
    missing = {n: v for n, v in wanted.items() if n not in installed}
    if not missing:
        return None
    requirements = sorted(f"{n}=={v}" for n, v in missing.items())
    constraints = sorted(f"{n}=={v}" for n, v in installed.items() if n not in INSTALLERS)
    tags = platforms(env)
    key = json.dumps([requirements, constraints, tags, env.python], sort_keys=True)
    directory = ClientSettings().home / "wheels" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if not (directory / REQUIREMENTS_FILE).is_file():
        _download(directory, requirements, constraints, tags, env, installed, quiet=quiet)
    replaces = sorted(
        n for n in INSTALLERS & set(installed) if any(_wheel_name(w) == n for w in directory.glob("*.whl"))
    )
    return FrameworkInstall(directory=directory, packages=packages, replaces=replaces)


def _download(
    directory: Path,
    requirements: list[str],
    constraints: list[str],
    tags: list[str],
    env: ImageEnvironment,
    installed: dict[str, str],
    *,
    quiet: bool,
) -> None:
    """`pip download` the requirements with their dependencies for the image; keep what the image lacks."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="download-", dir=directory.parent))
    try:
        (staging / REQUIREMENTS_FILE).write_text("\n".join(requirements) + "\n")
        (staging / CONSTRAINTS_FILE).write_text("\n".join(constraints) + "\n")
        version = env.python.replace(".", "")
        command = [
            sys.executable, "-m", "pip", "download", "--progress-bar", "off", "--only-binary=:all:",
            "--dest", str(staging), "--python-version", env.python, "--implementation", "cp",
            "--abi", f"cp{version}", "--abi", "abi3", "--abi", "none",
            *(arg for tag in tags for arg in ("--platform", tag)),
            "-r", str(staging / REQUIREMENTS_FILE), "-c", str(staging / CONSTRAINTS_FILE),
        ]  # fmt: skip
        _run_pip(command, f"resolve {', '.join(requirements)}", quiet=quiet)
        for wheel in staging.glob("*.whl"):
            name, version = _wheel_name(wheel), wheel.name.split("-")[1]
            if installed.get(name) == version or (name in installed and name not in INSTALLERS):
                wheel.unlink()  # the image has this very version (constraints): not shipped twice
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum(w.stat().st_size for w in directory.glob("*.whl")) / 1e6
    logger.info("Resolved %s into %s (%.0f MB of wheels)", ", ".join(requirements), directory, size)


def _run_pip(command: list[str], title: str, *, quiet: bool) -> None:
    """Run pip showing its latest line; raise ClipperError with its output's tail when it fails."""
    tail: list[str] = []
    with status_line(title, quiet=quiet) as show:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith("WARNING: Location"):  # local index dirs without this project
                tail.append(line)
                show(line)
        code = proc.wait(timeout=PIP_TIMEOUT_S)
    if code != 0:
        raise ClipperError(
            f"pip could not resolve the model's packages for its image ({title}):\n" + "".join(tail[-15:])
        )


def _wheel_name(wheel: Path) -> str:
    return canonical_name(wheel.name.split("-", 1)[0])


def check_image_packages(client: DockerClient, image: str, packages: dict[str, str]) -> None:
    """Refuse `image` unless it has exactly the recorded `packages` installed."""
    installed = image_environment(client, image).installed()
    wrong = {
        name: installed.get(canonical_name(name)) for name, version in packages.items()
        if installed.get(canonical_name(name)) != version
    }  # fmt: skip
    if wrong:
        found = ", ".join(
            f"{n}: recorded {packages[n]}, image has {v or 'nothing'}" for n, v in wrong.items()
        )
        raise ClipperError(
            f"Image {image} does not have the versions the model was saved with ({found}). Do not "
            "change them with pkgs_to_install or the base image; save the model with the versions to serve."
        )
