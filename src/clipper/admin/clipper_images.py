"""Clipper 0.4's published image names, and what each one becomes on our runtime.

Clipper users' scripts name `clipper/noop-container:<tag>`, `clipper/python36-closure-container:<tag>` and
so on. Managers map the ones we can honour onto our runtime (and log the mapping once per use); any other
`clipper/...` model image is refused with the reason. Pure names: no Docker, no processes.
"""

from __future__ import annotations

import logging
import re
from enum import Enum
from typing import Any

from clipper.admin.exceptions import ClipperException

logger = logging.getLogger(__name__)

NOOP_PREDICT_MODULE = "clipper.admin.clipper_images:noop_predict"
NOOP_OUTPUT = "1.0"  # what Clipper's noop container answers for every input, whatever its type

# Clipper's framework containers, by repository name, and our deployer for that framework (None: none here).
FRAMEWORK_IMAGES = {
    "pytorch": "clipper_admin.deployers.pytorch",
    "tf": "clipper_admin.deployers.tensorflow",
    "keras": "clipper_admin.deployers.keras",
    "mxnet": None,
    "pyspark": None,
    "caffe2-onnx": "clipper_admin.deployers.onnx",
    "xgboost": "clipper_admin.deployers.xgboost",
}
_CLOSURE = re.compile(r"python(\d*)-closure-container")
_FRAMEWORK = re.compile(r"(?P<kind>[a-z0-9-]+?)(\d*)-container")


class ImageKind(Enum):
    """What a Clipper image name stands for here."""

    NOOP = "noop"  # answers NOOP_OUTPUT to every query
    CLOSURE = "closure"  # runs the pickled closure in the model directory


# Clipper's names of each kind; our image of that kind carries them as `clipper/<name>:<our version>`
# (scripts and tests find containers by them; the closure ones differ only by the Python they ran).
WELL_KNOWN = {
    ImageKind.NOOP: ("noop-container",),
    ImageKind.CLOSURE: tuple(f"python{v}-closure-container" for v in ("", "35", "36", "37")),
}


def clipper_repository(image: str) -> str | None:
    """`noop-container` for `[registry/]clipper/noop-container[:tag]`; None if not a `clipper/` image."""
    last = image.rsplit("/", 1)[-1]
    repository = image[: len(image) - len(last)] + last.split(":", 1)[0]
    namespace, _, name = repository.rpartition("/")
    if namespace.rsplit("/", 1)[-1] != "clipper":
        return None
    return name


def image_kind(image: str) -> ImageKind | None:
    """The kind of a Clipper image name we serve, None for names that are not Clipper's model images.

    `default` (the deployers' base image) is the closure container. A Clipper framework container raises:
    only Clipper's deployer wrote the model layout it expects; ours save the model in its framework's format.
    """
    if image == "default":
        return ImageKind.CLOSURE
    name = clipper_repository(image)
    if name is None:
        return None
    if name == "noop-container":
        return ImageKind.NOOP
    if _CLOSURE.fullmatch(name):
        return ImageKind.CLOSURE
    found = _FRAMEWORK.fullmatch(name)
    if found and found["kind"] in FRAMEWORK_IMAGES:
        deployer = FRAMEWORK_IMAGES[found["kind"]]
        instead = (
            f"Deploy it with {deployer}, which saves the model in its framework's format and builds an image "
            "with exactly the packages it needs"
            if deployer
            else "This framework has no deployer here: export the model to ONNX "
            "(clipper_admin.deployers.onnx) or deploy it as a Python closure (clipper_admin.deployers.python)"
        )
        raise ClipperException(
            f"Image {image} is Clipper's {found['kind']} container, which serves only the model layout "
            f"Clipper's own deployer wrote. {instead}."
        )
    return None


def log_mapping(image: str, kind: ImageKind, target: str) -> None:
    """The one line that says what a Clipper image name became."""
    logger.info("Clipper image %s (%s container) runs as %s", image, kind.value, target)


def noop_predict(inputs: list[Any]) -> list[str]:
    """Clipper's noop container: the same output for every input, so a deployment can be tested alone."""
    return [NOOP_OUTPUT] * len(inputs)
