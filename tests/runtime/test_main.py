"""`python -m clipper.runtime` as a real subprocess: registration, one predict, SIGTERM, start-up errors."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from clipper.rpc import codec
from clipper.runtime.closure import save_closure
from clipper.types import InputType
from tests.conftest import wait_until

WAIT_S = 20.0


@pytest.fixture
def spawn(tmp_path):
    """Start `python -m clipper.runtime` with only our CLIPPER_* variables; kill leftovers at teardown."""
    procs = []

    def start(**env):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CLIPPER_")}
        log = open(tmp_path / f"container-{len(procs)}.log", "w+")  # closed at teardown
        proc = subprocess.Popen(
            [sys.executable, "-m", "clipper.runtime"],
            env={**clean, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, log))
        return proc, log

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT_S)
        log.close()


def _read(log):
    log.flush()
    log.seek(0)
    return log.read()


def _env(port, **extra):
    return {
        "CLIPPER_MODEL_NAME": "sum-model",
        "CLIPPER_MODEL_VERSION": "1",
        "CLIPPER_IP": "127.0.0.1",
        "CLIPPER_PORT": str(port),
        "CLIPPER_INPUT_TYPE": "doubles",
        "CLIPPER_HEARTBEAT_INTERVAL_MS": "100",
        **extra,
    }


def test_closure_container_registers_serves_and_exits_on_sigterm(frontend, spawn, tmp_path):
    scale = np.array([1.0, 1.0])

    def predict(inputs):
        return [str(v) for v in inputs @ scale]

    save_closure(predict, tmp_path / "model")
    ready = tmp_path / "ready"
    proc, log = spawn(
        **_env(frontend.port, CLIPPER_MODEL_PATH=str(tmp_path / "model"), CLIPPER_READY_FILE=str(ready))
    )
    routing_id, announced = frontend.register()
    assert announced == codec.NewContainer("sum-model", "1", InputType.DOUBLES, 3, follows_frontends=True)
    assert ready.is_file()
    inputs = [struct.pack("<2d", 1.0, 2.0), struct.pack("<2d", 3.0, 4.5)]
    assert frontend.predict(routing_id, 7, InputType.DOUBLES, inputs) == codec.PredictResponse(
        7, [b"3.0", b"7.5"]
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT_S) == 0
    assert f"serving sum-model:1 to 127.0.0.1:{frontend.port}" in _read(log)


GATED_MODEL = """
    import os, pathlib, time

    def predict(inputs):
        gate = pathlib.Path(os.environ["TEST_GATE_DIR"])
        (gate / "started").touch()
        deadline = time.monotonic() + 20
        while not (gate / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return [x.decode()[::-1] for x in inputs]
"""


def test_sigterm_finishes_the_batch_in_hand(frontend, spawn, tmp_path):
    (tmp_path / "gated_model.py").write_text(textwrap.dedent(GATED_MODEL))
    env = _env(
        frontend.port,
        CLIPPER_INPUT_TYPE="strings",
        CLIPPER_PREDICT_MODULE="gated_model:predict",
        PYTHONPATH=str(tmp_path),
        TEST_GATE_DIR=str(tmp_path),
    )
    proc, _ = spawn(**env)
    routing_id, _ = frontend.register()
    frontend.send(routing_id, codec.encode_predict_request(3, InputType.STRINGS, [b"abc", b"xy"]))
    wait_until((tmp_path / "started").exists, WAIT_S, "the model to start the batch")
    proc.send_signal(signal.SIGTERM)
    (tmp_path / "go").touch()
    _, reply = frontend.expect(codec.PredictResponse)
    assert reply == codec.PredictResponse(3, [b"cba", b"yx"])
    assert proc.wait(WAIT_S) == 0


@pytest.mark.parametrize("missing", ["CLIPPER_MODEL_NAME", "CLIPPER_MODEL_VERSION"])
def test_missing_model_name_or_version_exits_1(spawn, missing):
    env = _env(7000, CLIPPER_PREDICT_MODULE="json:dumps")
    del env[missing]
    proc, log = spawn(**env)
    assert proc.wait(WAIT_S) == 1
    assert f"{missing} must be set" in _read(log)


def test_version_mismatch_exits_1_with_advice(spawn, tmp_path):
    save_closure(len, tmp_path)
    (tmp_path / "metadata.json").write_text('{"python": "3.6", "cloudpickle": "0.5.3"}')
    proc, log = spawn(**_env(7000, CLIPPER_MODEL_PATH=str(tmp_path)))
    assert proc.wait(WAIT_S) == 1
    assert "saved by Python 3.6 with cloudpickle 0.5.3" in _read(log)


def test_unknown_input_type_exits_1(spawn):
    proc, log = spawn(**_env(7000, CLIPPER_INPUT_TYPE="tensors", CLIPPER_PREDICT_MODULE="json:dumps"))
    assert proc.wait(WAIT_S) == 1
    assert "Invalid input_type 'tensors'" in _read(log)
