"""Framework packages of a model image without Docker: what a model directory records, the wheel tags an
image accepts, and the Dockerfile that installs the wheels without keeping them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipper.admin import images
from clipper.admin.model_packages import FrameworkInstall, ImageEnvironment, platforms, recorded_packages
from clipper.errors import ClipperError


def environment(**changes: object) -> ImageEnvironment:
    base = {"implementation": "cpython", "python": "3.11", "machine": "x86_64", "glibc": "2.36"}
    return ImageEnvironment.model_validate(base | {"distributions": {}} | changes)


def test_recorded_packages_are_read_and_bad_ones_named(tmp_path: Path) -> None:
    assert recorded_packages(tmp_path) == {}
    (tmp_path / "metadata.json").write_text(json.dumps({"python": "3.11", "packages": {"torch": "2.13.0"}}))
    assert recorded_packages(tmp_path) == {"torch": "2.13.0"}
    (tmp_path / "metadata.json").write_text(json.dumps({"packages": ["torch"]}))
    with pytest.raises(ClipperError, match=r"'packages' must map pip distribution names to exact versions"):
        recorded_packages(tmp_path)


def test_platforms_follow_the_image_glibc_and_refuse_others() -> None:
    tags = platforms(environment())
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_28_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_37_x86_64" not in tags
    with pytest.raises(ClipperError, match="need CPython on glibc"):
        platforms(environment(glibc=None))


def test_model_dockerfile_installs_wheels_in_a_stage_of_their_own(tmp_path: Path) -> None:
    install = FrameworkInstall(directory=tmp_path, packages={"torch": "2.13.0+cpu"}, replaces=["setuptools"])
    dockerfile = images.model_dockerfile("clipper/clipper:1", ["inflection"], install)
    stage, final = dockerfile.split("FROM clipper/clipper:1\n")
    assert stage.startswith("FROM clipper/clipper:1 AS frameworks\nCOPY wheels ")
    assert "--no-index --find-links" in stage and "--root /staged" in stage
    assert "wheels" not in final  # the wheels stay in the discarded stage
    lines = final.splitlines()
    uninstall = lines.index("RUN python -m pip uninstall -y setuptools")
    assert uninstall < lines.index("COPY --from=frameworks /staged/ /") < lines.index("COPY model /model/")
    assert 'LABEL ai.clipper.packages="{\\"torch\\": \\"2.13.0+cpu\\"}"' in lines
    assert images.model_dockerfile("b", None).count("FROM") == 1
