"""One real local cluster per test module, and a helper that serves a deployed model as an app and asks it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clipper.admin import ClipperConnection
from tests.admin.conftest import cluster, predict_until

__all__ = ["answered", "cluster", "model_dir", "predict_deployed", "same_numbers"]

SLO_MICROS = 30_000_000  # the first batch may wait on a framework's lazy start; never the default output


def answered(answer: Any) -> bool:
    """A batch answer in which the model answered every input (no default output)."""
    return "batch_predictions" in answer and not any(p["default"] for p in answer["batch_predictions"])


def predict_deployed(
    conn: ClipperConnection, name: str, inputs: list[Any], deployer: Callable[..., None], *args: Any
) -> list[Any]:
    """Register app `name`, deploy model `name` version 1 with `deployer(conn, name, 1, "doubles", *args)`,
    link them and return the outputs for `inputs` (two or more) sent as one `input_batch`."""
    input_type = "doubles"
    conn.register_application(name, input_type, "null", SLO_MICROS)
    deployer(conn, name, 1, input_type, *args)
    conn.link_model_to_app(name, name)
    url = f"http://{conn.get_query_addr()}/{name}/predict"
    answer = predict_until(url, {"input_batch": inputs}, answered)
    assert len(answer["batch_predictions"]) == len(inputs), answer
    return [p["output"] for p in answer["batch_predictions"]]


def model_dir(conn: ClipperConnection, name: str, version: str = "1") -> Path:
    """Where the local manager keeps a deployed model version's files."""
    return conn.cm.state_dir / "models" / f"{name}-{version}"  # type: ignore[attr-defined, no-any-return]


def same_numbers(outputs: list[Any], expected: Any) -> bool:
    """Equal up to the last bits: the container may batch the inputs differently from the local call, and
    BLAS kernels round differently by batch size."""
    got = np.asarray(outputs, dtype=np.float64)
    return got.shape == np.shape(expected) and bool(np.allclose(got, expected, rtol=1e-5, atol=1e-7))
