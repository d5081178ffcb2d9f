"""The `clipper` command through click's CliRunner, against a real local cluster."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from clipper.cli import cli
from tests.conftest import free_port, require_or_skip

COMMANDS = [
    "start", "stop", "status", "deploy", "predict", "logs", "apps", "models", "containers",
    "link", "set-version", "replicas", "quickstart", "top",
]  # fmt: skip


@pytest.fixture
def clipper(tmp_path: Path) -> Iterator:
    """Run `clipper --cluster <tmp> --state-dir <tmp> ARGS`; stop the cluster afterwards."""
    runner = CliRunner()
    base = ["--cluster", "cli-test", "--state-dir", str(tmp_path / "state")]

    def run(*args: str, code: int = 0):
        result = runner.invoke(cli, [*base, *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    yield run
    runner.invoke(cli, [*base, "stop"])


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(command: str | None) -> None:
    result = CliRunner().invoke(cli, [command, "--help"] if command else ["--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


def test_cluster_lifecycle(clipper, tmp_path: Path) -> None:
    assert "not running" in clipper("status").output
    assert "No running cluster" in clipper("apps", code=1).output

    ports = [str(free_port()) for _ in range(4)]
    started = clipper(
        "start", "--query-port", ports[0], "--management-port", ports[1], "--rpc-port", ports[2],
        "--redis-port", ports[3],
    )  # fmt: skip
    assert f"127.0.0.1:{ports[0]}" in started.output

    model_file = tmp_path / "model.py"
    model_file.write_text("def predict(inputs):\n    return [str(len(x)) for x in inputs]\n")
    deployed = clipper(
        "deploy", str(model_file), "predict", "--name", "length", "--input-type", "strings", "--app", "len"
    )
    assert "length:1" in deployed.output and "Linked length to app len" in deployed.output

    answer = json.loads(clipper("predict", "len", '"hello"').output)
    assert answer["output"] == 5 and answer["default"] is False
    answer = json.loads(clipper("predict", "len", '{"input_batch": ["a", "abc"]}').output)
    assert [p["output"] for p in answer["batch_predictions"]] == [1, 3]

    status = clipper("status").output
    assert "query" in status and "management" in status and "running" in status and "len" in status
    assert "len" in clipper("apps").output
    assert "length" in clipper("models").output
    assert "length" in clipper("containers").output

    clipper("deploy", str(model_file), "predict", "--name", "length", "--input-type", "strings")
    assert "2 replica" in clipper("replicas", "length", "2").output
    assert "version 1" in clipper("set-version", "length", "1").output
    assert "Unlinked" in clipper("link", "len", "length", "--unlink").output
    assert "query" in clipper("logs", "query").output

    failed = clipper("predict", "nope", "[1.0]", code=1)
    assert len(failed.output.strip().splitlines()) == 1 and "Error" in failed.output
    assert "Stopped" in clipper("stop").output
    assert "not running" in clipper("status").output


def test_quickstart(clipper) -> None:
    out = clipper("quickstart").output
    assert '"output": 6.0' in out and "hello/predict" in out
    again = clipper("quickstart").output
    assert "Using running cluster" in again and '"output": 6.0' in again


def test_errors_are_one_line_unless_debug(tmp_path: Path) -> None:
    plain = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "apps"])
    assert plain.exit_code == 1 and plain.output.count("\n") <= 2 and "Traceback" not in plain.output
    debug = CliRunner().invoke(cli, ["--debug", "--state-dir", str(tmp_path), "apps"])
    assert debug.exit_code == 1 and debug.exception is not None


def test_start_flags_turn_checks_off_and_on(clipper, tmp_path: Path) -> None:
    """`--no-auth --no-rpc-auth` for Clipper 0.4 clients and containers; `--query-token` adds one."""
    ports = [str(free_port()) for _ in range(4)]
    clipper(
        "start", "--query-port", ports[0], "--management-port", ports[1], "--rpc-port", ports[2],
        "--redis-port", ports[3], "--no-auth", "--no-rpc-auth", "--query-token",
    )  # fmt: skip
    secrets = {p.name for p in (tmp_path / "state" / "secrets").iterdir()}
    assert {"query_token", "redis_password"} <= secrets and not {"auth_token", "rpc_token"} & secrets
    url = f"http://127.0.0.1:{ports[1]}/admin/get_all_applications"
    assert requests.post(url, json={"verbose": False}, timeout=10).status_code == 200
    clipper("apps")  # the CLI works the same with the check off


def test_start_with_prometheus_prints_where_it_and_the_dashboard_are(clipper) -> None:
    """`--prometheus` runs one on `--prometheus-port` (Debian's binary; CI installs it) and says where."""
    missing = "no `prometheus` binary is on PATH" if shutil.which("prometheus") is None else None
    require_or_skip(missing, "CLIPPER_TEST_REQUIRE_PROMETHEUS", "apt-get install prometheus")
    ports = [str(free_port()) for _ in range(5)]
    started = clipper(
        "start", "--query-port", ports[0], "--management-port", ports[1], "--rpc-port", ports[2],
        "--redis-port", ports[3], "--prometheus", "--prometheus-port", ports[4],
    )  # fmt: skip
    assert f"metrics:     http://127.0.0.1:{ports[4]}/graph" in started.output
    assert f"dashboard:   http://127.0.0.1:{ports[1]}/dashboard" in started.output
    assert requests.get(f"http://127.0.0.1:{ports[4]}/-/healthy", timeout=10).status_code == 200
