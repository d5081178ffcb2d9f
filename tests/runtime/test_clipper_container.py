"""The Clipper 0.4 stand-in (tests/rpc/clipper_container.py) speaks the wire format our codec expects."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from clipper.rpc import codec
from clipper.types import InputType

SCRIPT = Path(__file__).resolve().parents[1] / "rpc" / "clipper_container.py"


@pytest.fixture
def clipper_container(frontend, tmp_path):
    """Run the stand-in against the test frontend with Clipper's environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPPER_")}
    env.update(CLIPPER_MODEL_NAME="sum-model", CLIPPER_MODEL_VERSION="1", CLIPPER_PORT=str(frontend.port))
    with open(tmp_path / "clipper-container.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--poll-timeout-ms", "100"], env=env, stdout=log, stderr=log
        )
        yield proc
        proc.kill()
        proc.wait(10)


def test_clipper_container_handshakes_and_serves_the_worked_example(frontend, clipper_container):
    routing_id, announced = frontend.register()
    assert announced == codec.NewContainer("sum-model", "1", InputType.DOUBLES, 3)
    inputs = [struct.pack("<2d", 1.0, 2.0), struct.pack("<2d", 3.0, 4.5)]
    reply = frontend.predict(routing_id, 7, InputType.DOUBLES, inputs)
    assert reply == codec.PredictResponse(7, [b"3.0", b"7.5"])
    reply = frontend.predict(routing_id, 8, InputType.STRINGS, [b"abc", b""])
    assert reply == codec.PredictResponse(8, [b"3", b"0"])
