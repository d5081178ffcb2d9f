"""Save and load a predict function as `func.pkl` (cloudpickle) plus `metadata.json` with the versions used.

Recording the Python and cloudpickle versions lets the container refuse a mismatched pickle with a clear
message instead of an obscure unpickling error (reference §9 #6). A framework model also records its
`format` and the exact `packages` that load it (clipper.runtime.frameworks).
"""

from __future__ import annotations

import importlib
import json
import logging
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clipper.errors import ClipperError

logger = logging.getLogger(__name__)

FUNC_FILE = "func.pkl"
METADATA_FILE = "metadata.json"
MODULES_DIR = "modules"

PredictFunction = Callable[[Any], Any]


class FrameworkRecord(BaseModel):
    """How the runtime loads a framework model saved beside `func.pkl`, and the packages it needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: str = Field(min_length=1, description="The loader to use, e.g. `torchscript` or `onnx`.")
    packages: dict[str, str] = Field(description="pip distribution name -> exact version the model needs.")


def python_version() -> str:
    """This interpreter's `major.minor`, as metadata.json records it."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def versions_match(saved: dict[str, Any], python: str, cloudpickle_version: str) -> bool:
    """What unpickling a closure needs: the same Python `major.minor` and the same cloudpickle major."""
    python_saved, pickler = str(saved.get("python", "")), str(saved.get("cloudpickle", ""))
    return python_saved == python and pickler.split(".")[0] == cloudpickle_version.split(".")[0]


def save_closure(func: Callable[..., Any], directory: Path, framework: FrameworkRecord | None = None) -> Path:
    """Pickle `func` (closure variables by value) into `directory`; return the path of `func.pkl`.

    With `framework`, the runtime loads that model first and calls `func(model, inputs)`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FUNC_FILE
    path.write_bytes(cloudpickle.dumps(func))
    metadata: dict[str, Any] = {"python": python_version(), "cloudpickle": cloudpickle.__version__}
    if framework is not None:
        metadata |= framework.model_dump()
    (directory / METADATA_FILE).write_text(json.dumps(metadata))
    return path


def load_closure(directory: Path) -> PredictFunction:
    """Load `directory/func.pkl` with `directory/modules` importable; raise ClipperError saying what to do."""
    path = directory / FUNC_FILE
    if not path.is_file():
        raise ClipperError(f"No model function at {path}: deploy the model with save_closure() first.")
    saved = read_metadata(directory)
    if saved is None:
        logger.warning("%s is missing; loading %s without a version check", directory / METADATA_FILE, path)
    _check_versions(saved, path)
    modules = str(directory / MODULES_DIR)
    if modules not in sys.path:
        sys.path.insert(0, modules)
    try:
        func = pickle.loads(path.read_bytes())
    except ModuleNotFoundError as e:
        raise ClipperError(
            f"Loading {path} needs the module '{e.name}', which is not installed in this container. "
            "Add its package to pkgs_to_install when deploying, or use a base image that has it."
        ) from e
    except ImportError as e:
        raise ClipperError(
            f"Loading {path} failed on an import ({e}). Install the packages the function uses "
            "(pkgs_to_install) in versions matching the ones used when it was saved."
        ) from e
    except (pickle.UnpicklingError, AttributeError, EOFError, TypeError, ValueError) as e:
        raise ClipperError(
            f"Cannot unpickle {path} ({type(e).__name__}: {e}); {_versions_text(saved)}. "
            "Redeploy the model from the client with this container's Python and cloudpickle versions."
        ) from e
    if not callable(func):
        raise ClipperError(f"{path} holds a {type(func).__name__}, not a function.")
    return func  # type: ignore[no-any-return]


def read_metadata(directory: Path) -> dict[str, Any] | None:
    """What `save_closure` recorded in `directory`, or None for a closure saved without it."""
    path = directory / METADATA_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise ClipperError(f"{path} is not valid JSON ({e}); redeploy the model.") from e
    if not isinstance(data, dict):
        raise ClipperError(f"{path} holds a JSON {type(data).__name__}, not an object; redeploy the model.")
    return {str(k): v for k, v in data.items()}


def read_framework(directory: Path) -> FrameworkRecord | None:
    """The framework model recorded in `directory`'s metadata, or None for a plain closure."""
    saved = read_metadata(directory)
    if saved is None or "format" not in saved:
        return None
    try:
        return FrameworkRecord(format=saved["format"], packages=saved.get("packages", {}))
    except ValidationError as e:
        fields = ", ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ClipperError(f"{directory / METADATA_FILE} has a bad framework record: {fields}") from e


def _check_versions(saved: dict[str, Any] | None, path: Path) -> None:
    if saved is None:
        return
    if not versions_match(saved, python_version(), cloudpickle.__version__):
        python, pickler = saved.get("python", ""), saved.get("cloudpickle", "")
        raise ClipperError(
            f"{path} was saved by {_versions_text(saved)}, this container runs Python "
            f"{python_version()} with cloudpickle {cloudpickle.__version__}. Redeploy from a client "
            f"running Python {python_version()} and cloudpickle {cloudpickle.__version__.split('.')[0]}.x, "
            f"or use a base image with Python {python} and cloudpickle {pickler}."
        )


def _versions_text(saved: dict[str, Any] | None) -> str:
    if saved is None:
        return "saved without version metadata"
    return f"Python {saved.get('python', '?')} with cloudpickle {saved.get('cloudpickle', '?')}"


def import_function(spec: str) -> PredictFunction:
    """Import `pkg.module:function`: the alternative to a pickled closure (benchmarks, custom images)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ClipperError(f"Predict module '{spec}' must look like 'package.module:function'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ClipperError(
            f"Cannot import '{module_name}' ({e}); install it in the container or fix CLIPPER_PREDICT_MODULE."
        ) from e
    func = getattr(module, attribute, None)
    if not callable(func):
        raise ClipperError(f"'{module_name}' has no function '{attribute}'.")
    return func  # type: ignore[no-any-return]
