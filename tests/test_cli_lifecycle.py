"""A new user's rough edges in the `clipper` command, against a real local cluster: nothing half done,
no traceback, one line per error, and a stop/start that serves again."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from clipper.cli import cli
from tests.conftest import free_port

Run = Callable[..., Result]


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-lifecycle") / "state"


@pytest.fixture(scope="module")
def clipper(state_dir: Path) -> Iterator[Run]:
    """`clipper --cluster lifecycle --state-dir <tmp> ARGS` against one cluster started for the module."""
    runner = CliRunner()
    base = ["--cluster", "lifecycle", "--state-dir", str(state_dir)]

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli, [*base, *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    ports = [str(free_port()) for _ in range(4)]
    run("start", "--query-port", ports[0], "--management-port", ports[1], "--rpc-port", ports[2],
        "--redis-port", ports[3])  # fmt: skip
    yield run
    runner.invoke(cli, [*base, "stop", "--purge"])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "model.py"
    path.write_text("def predict(inputs):\n    return [str(len(x)) for x in inputs]\n")
    return path


def _one_error_line(result: Result) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    return lines[0]


def test_start_on_a_running_cluster_says_how_to_stop_it(clipper: Run) -> None:
    line = _one_error_line(clipper("start", code=1))
    assert "already running" in line and "clipper stop" in line


def test_deploy_checks_the_app_before_it_deploys(clipper: Run, model_file: Path) -> None:
    clipper("deploy", str(model_file), "predict", "--name", "words", "--input-type", "strings", "--app", "w")
    args = ["deploy", str(model_file), "predict", "--name", "nums", "--input-type", "doubles", "--app", "w"]
    line = _one_error_line(clipper(*args, code=1))
    assert "takes strings" in line and "nothing was deployed" in line
    assert "nums" not in clipper("models").output


def test_a_model_file_that_raises_is_one_line(clipper: Run, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_here\n")
    line = _one_error_line(
        clipper("deploy", str(broken), "predict", "--name", "b", "--input-type", "doubles", code=1)
    )
    assert "ModuleNotFoundError" in line


def test_a_name_too_long_is_refused_before_anything_is_written(
    clipper: Run, model_file: Path, state_dir: Path
) -> None:
    name = "m" * 300
    line = _one_error_line(
        clipper("deploy", str(model_file), "predict", "--name", name, "--input-type", "doubles", code=1)
    )
    assert "at most 63 characters" in line
    assert not any(p.name.startswith("mmm") for p in (state_dir / "models").iterdir())


def test_an_admin_error_is_printed_once(clipper: Run, state_dir: Path) -> None:
    """Run as a user runs it (a real process, logging as configured there), not inside pytest's capture."""
    cli_args = ["--cluster", "lifecycle", "--state-dir", str(state_dir), "link", "no-such-app", "words"]
    cmd = [sys.executable, "-c", "from clipper.cli import main; main()", *cli_args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    assert done.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("Error:") and "no-such-app" in lines[0]


def test_replicas_waits_until_they_are_connected(clipper: Run) -> None:
    clipper("replicas", "words", "2")
    containers = clipper("containers").output
    assert containers.count("words") >= 2


def test_stop_and_start_serve_again_and_purge_starts_from_nothing(clipper: Run, state_dir: Path) -> None:
    clipper("stop")
    ports = [str(free_port()) for _ in range(4)]
    start = ["start", "--query-port", ports[0], "--management-port", ports[1], "--rpc-port", ports[2],
             "--redis-port", ports[3]]  # fmt: skip
    assert "Resumed model words:1 with 2 replica(s)" in clipper(*start).output
    answer = clipper("predict", "w", '"hello"').output
    assert '"output": 5' in answer and '"default": false' in answer
    clipper("stop", "--purge")
    assert not state_dir.exists()
    clipper(*start)
    assert "words" not in clipper("apps").output
