"""Clipper 0.4's `deploy_pytorch_model`: the model is saved as TorchScript when torch.jit.script can compile
it, else as its `state_dict` plus the module's structure with no weights in it (its tensors moved to the meta
device), never as one pickle of the whole model. The runtime calls `func(model, inputs)` in eval mode.
"""

from __future__ import annotations

import copy
import importlib
import logging
import warnings
from pathlib import Path
from typing import Any

import cloudpickle

from clipper.admin.deployers.clipper_api import framework_deployer, framework_endpoint
from clipper.admin.deployers.framework import ModelSaver, installed_pins, model_path
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


deploy_pytorch_model = framework_deployer(__name__, "pytorch_model", pytorch_saver)
create_endpoint = framework_endpoint(__name__, "pytorch_model", deploy_pytorch_model)
