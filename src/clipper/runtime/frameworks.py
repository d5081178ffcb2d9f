"""Load a framework model once at container start with the framework's own loader, after checking that the
packages recorded with it are installed in exactly the recorded versions.

A model directory holds `func.pkl`, `metadata.json` (`format`, `packages`) and the model in the format's
file (MODEL_FILES); the runtime calls the user's `func(model, inputs)`. Frameworks are imported only here,
inside the loader of their format, so a container imports just the one its model needs.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import pickle
import re
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from clipper.errors import ClipperError
from clipper.runtime.closure import FrameworkRecord, PredictFunction, load_closure, read_framework

logger = logging.getLogger(__name__)


class ModelFormat(StrEnum):
    """How a framework model is stored; the value is what metadata.json records as `format`."""

    TORCHSCRIPT = "torchscript"
    TORCH_STATE_DICT = "torch-state-dict"
    ONNX = "onnx"
    TF_SAVEDMODEL = "tf-savedmodel"
    KERAS = "keras"
    XGBOOST_JSON = "xgboost-json"
    LIGHTGBM_TEXT = "lightgbm-text"
    SKOPS = "skops"
    JOBLIB = "joblib"


MODEL_FILES: dict[ModelFormat, str] = {
    ModelFormat.TORCHSCRIPT: "model.torchscript.pt",
    ModelFormat.TORCH_STATE_DICT: "model.state_dict.pt",
    ModelFormat.ONNX: "model.onnx",
    ModelFormat.TF_SAVEDMODEL: "savedmodel",
    ModelFormat.KERAS: "model.keras",
    ModelFormat.XGBOOST_JSON: "model.xgboost.json",
    ModelFormat.LIGHTGBM_TEXT: "model.lightgbm.txt",
    ModelFormat.SKOPS: "model.skops",
    ModelFormat.JOBLIB: "model.joblib",
}
TORCH_MODULE_FILE = "module.pkl"  # torch-state-dict: the module's structure, its tensors on the meta device


def canonical_name(distribution: str) -> str:
    """A distribution's normalized name (PEP 503): how metadata.json records it and wheel names compare."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def installed_version(distribution: str, search_path: Sequence[str] | None = None) -> str | None:
    """The version of `distribution` importable from `search_path` (default sys.path), or None."""
    found = importlib.metadata.distributions(name=distribution, path=list(search_path or sys.path))
    for dist in found:
        return dist.version
    return None


def check_packages(packages: dict[str, str], search_path: Sequence[str] | None = None) -> None:
    """Refuse to load a model whose recorded packages are missing here or installed in other versions."""
    problems = []
    for name, recorded in sorted(packages.items()):
        installed = installed_version(name, search_path)
        if installed != recorded:
            here = f"{name} {installed} is installed" if installed else f"{name} is not installed"
            problems.append(f"the model was saved with {name}=={recorded} but {here}")
    if problems:
        pins = " ".join(f"'{n}=={v}'" for n, v in sorted(packages.items()))
        raise ClipperError(
            f"Cannot load the model: {'; '.join(problems)}. Install the recorded versions "
            f"(pip install {pins}), or save and deploy the model again from an environment with the "
            "versions installed here."
        )


def _load_torchscript(path: Path) -> Any:
    torch = importlib.import_module("torch")
    return torch.jit.load(str(path), map_location="cpu").eval()


def _load_torch_state_dict(path: Path) -> Any:
    torch = importlib.import_module("torch")
    module = pickle.loads((path.parent / TORCH_MODULE_FILE).read_bytes())
    module.to_empty(device="cpu")
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return module.eval()


def _load_onnx(path: Path) -> Any:
    onnxruntime = importlib.import_module("onnxruntime")
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _load_tf_savedmodel(path: Path) -> Any:
    tensorflow = importlib.import_module("tensorflow")
    return tensorflow.saved_model.load(str(path))


def _load_keras(path: Path) -> Any:
    keras = importlib.import_module("keras")
    return keras.models.load_model(path)


def _load_xgboost(path: Path) -> Any:
    xgboost = importlib.import_module("xgboost")
    booster = xgboost.Booster()
    booster.load_model(str(path))
    return booster


def _load_lightgbm(path: Path) -> Any:
    lightgbm = importlib.import_module("lightgbm")
    return lightgbm.Booster(model_file=str(path))


def _load_skops(path: Path) -> Any:
    """The deployer wrote this file from the user's own model, so the types it names are trusted."""
    skops_io = importlib.import_module("skops.io")
    return skops_io.load(path, trusted=skops_io.get_untrusted_types(file=path))


def _load_joblib(path: Path) -> Any:
    joblib = importlib.import_module("joblib")
    return joblib.load(path)


LOADERS: dict[ModelFormat, Callable[[Path], Any]] = {
    ModelFormat.TORCHSCRIPT: _load_torchscript,
    ModelFormat.TORCH_STATE_DICT: _load_torch_state_dict,
    ModelFormat.ONNX: _load_onnx,
    ModelFormat.TF_SAVEDMODEL: _load_tf_savedmodel,
    ModelFormat.KERAS: _load_keras,
    ModelFormat.XGBOOST_JSON: _load_xgboost,
    ModelFormat.LIGHTGBM_TEXT: _load_lightgbm,
    ModelFormat.SKOPS: _load_skops,
    ModelFormat.JOBLIB: _load_joblib,
}


def load_model(directory: Path, framework: FrameworkRecord) -> Any:
    """Check the recorded packages, then load the model with its format's loader."""
    try:
        model_format = ModelFormat(framework.format)
    except ValueError:
        known = ", ".join(f.value for f in ModelFormat)
        raise ClipperError(
            f"{directory} records the model format '{framework.format}', which this runtime cannot load "
            f"(it knows {known}); use a newer clipper runtime or redeploy the model."
        ) from None
    check_packages(framework.packages)
    path = directory / MODEL_FILES[model_format]
    if not path.exists():
        raise ClipperError(f"{directory} records a {model_format} model but has no {path.name}; redeploy")
    logger.info("loading the %s model in %s", model_format, directory)
    return LOADERS[model_format](path)


def load_model_function(directory: Path) -> PredictFunction:
    """The closure in `directory`; for a framework model, bound to the model loaded once (func(model, x))."""
    framework = read_framework(directory)
    if framework is None:
        return load_closure(directory)
    model = load_model(directory, framework)  # checks the packages before anything is unpickled
    return functools.partial(load_closure(directory), model)


def check_model_packages(directory: Path, extra_path: Sequence[Path] = ()) -> None:
    """Before a local deploy goes live: the packages a framework model in `directory` records must be the
    ones installed where its replicas will run (this interpreter's path, plus `extra_path`)."""
    framework = read_framework(directory)
    if framework is not None:
        check_packages(framework.packages, [*map(str, extra_path), *sys.path])
