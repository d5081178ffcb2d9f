"""`python -m clipper.runtime`: load the model named by the environment and serve it until SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from clipper.errors import ClipperError
from clipper.runtime.closure import PredictFunction, import_function
from clipper.runtime.frameworks import load_model_function
from clipper.runtime.server import ModelContainer
from clipper.settings import ContainerSettings
from clipper.types import InputType

logger = logging.getLogger("clipper.runtime")

_REQUIRED = ("model_name", "model_version")


def load_predict_function(settings: ContainerSettings) -> PredictFunction:
    """The function named by CLIPPER_PREDICT_MODULE if set, else the closure in CLIPPER_MODEL_PATH (bound to
    its framework model, loaded once here, when it has one)."""
    if settings.predict_module:
        return import_function(settings.predict_module)
    return load_model_function(Path(settings.model_path))


def _read_settings() -> ContainerSettings | None:
    try:
        return ContainerSettings()
    except ValidationError as e:
        missing = [
            f"CLIPPER_{str(err['loc'][0]).upper()}"
            for err in e.errors()
            if err["type"] == "missing" and err["loc"] and err["loc"][0] in _REQUIRED
        ]
        if missing:
            logger.error("%s must be set (CLIPPER_MODEL_NAME and CLIPPER_MODEL_VERSION)", ", ".join(missing))
        else:
            logger.error("invalid container settings: %s", e)
        return None


def main() -> int:
    """Start one model container; 0 after a clean stop, 1 when the environment or the model is unusable."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _read_settings()
    if settings is None:
        return 1
    try:
        input_type = InputType.parse_env(settings.input_type)
        predict = load_predict_function(settings)
        container = ModelContainer(settings, predict, input_type=input_type)  # it reads CLIPPER_RPC_TOKEN
    except ClipperError as e:
        logger.error("%s", e)
        return 1
    if settings.ready_file:
        Path(settings.ready_file).write_text(f"{settings.model_name}:{settings.model_version}\n")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        container.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    logger.info(
        "serving %s:%s to %s:%d (%s)",
        settings.model_name, settings.model_version, settings.ip, settings.port,
        "with an RPC token" if settings.rpc_token is not None else "without an RPC token",
    )  # fmt: skip
    try:
        container.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
