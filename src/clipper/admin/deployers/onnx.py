"""Serve an ONNX model through onnxruntime, so a model exported from any framework runs without it.

`deploy_onnx_model` takes an ONNX model (an `onnx.ModelProto`, its bytes, or a `.onnx` path). Converting is
one call: scikit-learn `skl2onnx.to_onnx(model, X[:1].astype(numpy.float32))`, PyTorch
`torch.onnx.export(...)`, which Clipper 0.4's `deploy_pytorch_model` here does for you (onnxruntime takes the
place of Clipper's caffe2 backend). The runtime hands `func` an `onnxruntime.InferenceSession`.
"""

from __future__ import annotations

import importlib
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipper.admin.connection import ClipperConnection
from clipper.admin.deployers.clipper_api import framework_deployer, framework_endpoint
from clipper.admin.deployers.framework import ModelSaver, installed_pins, model_path
from clipper.admin.exceptions import ClipperException
from clipper.runtime.closure import FrameworkRecord
from clipper.runtime.frameworks import ModelFormat

logger = logging.getLogger(__name__)

BACKENDS = (
    "onnxruntime",
    "caffe2",
)  # caffe2 left PyTorch in 2.x; Clipper's default name is served by onnxruntime


def _onnx_bytes(onnx_model: Any) -> bytes:
    if isinstance(onnx_model, bytes):
        return onnx_model
    if isinstance(onnx_model, str | Path):
        return Path(onnx_model).read_bytes()
    if hasattr(onnx_model, "SerializeToString"):
        return onnx_model.SerializeToString()  # type: ignore[no-any-return]
    raise TypeError(
        f"onnx_model must be an onnx.ModelProto, bytes or a path, not {type(onnx_model).__name__}"
    )


def onnx_saver(onnx_model: Any) -> ModelSaver:
    """Check that onnxruntime can load `onnx_model` (before anything starts); save it as model.onnx."""
    data = _onnx_bytes(onnx_model)
    onnxruntime = importlib.import_module("onnxruntime")
    try:
        onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) derive from Exception only
        raise ClipperException(f"onnxruntime cannot load the ONNX model: {e}") from e

    def save(directory: Path) -> FrameworkRecord:
        model_path(directory, ModelFormat.ONNX).write_bytes(data)
        return FrameworkRecord(format=ModelFormat.ONNX, packages=installed_pins("onnxruntime"))

    return save


deploy_onnx_model = framework_deployer(__name__, "onnx_model", onnx_saver)
create_endpoint = framework_endpoint(__name__, "onnx_model", deploy_onnx_model)


def export_pytorch_model(pytorch_model: Any, inputs: Any) -> bytes:
    """`pytorch_model` exported to ONNX with `inputs` as the example; the first dimension stays the batch."""
    torch = importlib.import_module("torch")
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    names = [f"input_{i}" for i in range(len(args))]
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the exporter torch 2.13 prefers needs onnxscript; this one does not
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            pytorch_model.eval(),
            args,
            buffer,
            dynamo=False,
            input_names=names,
            output_names=["output"],
            dynamic_axes={name: {0: "batch"} for name in [*names, "output"]},
        )
    return buffer.getvalue()


def deploy_pytorch_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: Any,
    input_type: str,
    inputs: Any,
    func: Callable[[Any, Any], Any],
    pytorch_model: Any,
    base_image: str = "default",
    labels: list[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    onnx_backend: str = "onnxruntime",
    batch_size: int = -1,
    pkgs_to_install: list[str] | None = None,
    input_shape: list[int] | None = None,
) -> None:
    """Clipper 0.4's ONNX path: export `pytorch_model` (example `inputs`) to ONNX and deploy it."""
    if onnx_backend not in BACKENDS:
        raise ClipperException(
            f"onnx_backend must be 'onnxruntime' (or Clipper's 'caffe2'), not {onnx_backend!r}"
        )
    options = (base_image, labels, registry, num_replicas, batch_size, pkgs_to_install, input_shape)
    onnx_model = export_pytorch_model(pytorch_model, inputs)
    deploy_onnx_model(clipper_conn, name, version, input_type, func, onnx_model, *options)
