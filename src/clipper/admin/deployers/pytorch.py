"""Clipper 0.4's `deploy_pytorch_model`: the model is saved as TorchScript when torch.jit.script can compile
it, else as its `state_dict` plus the module's structure with no weights in it (its tensors moved to the meta
device), never as one pickle of the whole model. The runtime calls `func(model, inputs)` in eval mode.
"""

from __future__ import annotations

import copy
import importlib
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle

from clipper.admin.connection import ClipperConnection
from clipper.admin.deployers.framework import ModelSaver, deploy_framework_model, installed_pins, model_path
from clipper.runtime.closure import FrameworkRecord
from clipper.runtime.frameworks import TORCH_MODULE_FILE, ModelFormat

logger = logging.getLogger(__name__)


def pytorch_saver(pytorch_model: Any) -> ModelSaver:
    """Save `pytorch_model` (a torch.nn.Module) as TorchScript, or as state_dict + weightless module."""
    torch = importlib.import_module("torch")
    if not isinstance(pytorch_model, torch.nn.Module):
        raise TypeError(f"pytorch_model must be a torch.nn.Module, not {type(pytorch_model).__name__}")

    def save(directory: Path) -> FrameworkRecord:
        packages = installed_pins("torch")
        try:
            with (
                warnings.catch_warnings()
            ):  # torch 2.13 deprecates torch.jit; its files still load everywhere
                warnings.simplefilter("ignore", DeprecationWarning)
                scripted = torch.jit.script(pytorch_model)
            scripted.save(str(model_path(directory, ModelFormat.TORCHSCRIPT)))
            return FrameworkRecord(format=ModelFormat.TORCHSCRIPT, packages=packages)
        except (torch.jit.frontend.FrontendError, RuntimeError, OSError, TypeError, AttributeError) as e:
            logger.info(
                "torch.jit.script cannot compile %s (%s); saving its state_dict", type(pytorch_model), e
            )
        structure = copy.deepcopy(pytorch_model).to("meta")
        (directory / TORCH_MODULE_FILE).write_bytes(cloudpickle.dumps(structure))
        torch.save(pytorch_model.state_dict(), model_path(directory, ModelFormat.TORCH_STATE_DICT))
        return FrameworkRecord(format=ModelFormat.TORCH_STATE_DICT, packages=packages)

    return save


def deploy_pytorch_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    func: Callable[[Any, Any], Any],
    pytorch_model: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
) -> None:
    """Deploy `pytorch_model`; replicas load it once and answer with `func(model, inputs)`."""
    options = (base_image, labels, registry, num_replicas, batch_size, pkgs_to_install)
    deploy_framework_model(
        clipper_conn, name, version, input_type, func, pytorch_saver(pytorch_model), *options
    )
