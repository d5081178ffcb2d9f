"""`clipper top` in a real terminal (tmux) and as a script (--once), on a real local cluster under load."""

from __future__ import annotations

import itertools
import os
import shlex
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from clipper.admin.deployers.python import create_endpoint
from clipper.admin.managers.local import LocalContainerManager
from clipper.admin.managers.process import ClusterInfo
from clipper.admin.managers.secrets import AUTH_TOKEN, ClusterSecrets
from clipper.cli import cli
from tests.admin.conftest import running_cluster
from tests.conftest import free_port, wait_until

CLIPPER = str(Path(sys.executable).parent / "clipper")
APP = "topsum"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalContainerManager]:
    """A running cluster with app `topsum` served by model `topsum:1`."""
    with running_cluster(tmp_path_factory.mktemp("top") / "state") as conn:
        create_endpoint(conn, APP, "doubles", lambda xs: [str(sum(x)) for x in xs], slo_micros=2_000_000)
        yield conn.cm


@pytest.fixture
def load(cluster: LocalContainerManager) -> Iterator[None]:
    """Predictions of ever new inputs (so the cache cannot answer them) from a background thread."""
    stop = threading.Event()
    url = f"http://{cluster.get_query_addr()}/{APP}/predict"

    def send() -> None:
        with requests.Session() as http:
            for i in itertools.count():
                if stop.is_set():
                    return
                http.post(url, json={"input": [float(i), 2.0]}, timeout=10)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(15)


def top_command(manager: LocalContainerManager, *args: str) -> list[str]:
    return [CLIPPER, "--cluster", manager.cluster_name, "--state-dir", str(manager.state_dir), "top", *args]


class Terminal:
    """One command in a detached tmux pane (its own tmux server), read as the screen shows it."""

    def __init__(self, tmp_path: Path, command: list[str]) -> None:
        name = f"tmux-{uuid.uuid4().hex[:8]}"
        self.socket = str(tmp_path / name)  # not in /tmp/tmux-<uid>, where tmux leaves it after kill-server
        config = tmp_path / f"{name}.conf"
        config.write_text("set -g remain-on-exit on\n")  # the screen stays readable after the command exits
        # The shell writes the status (tmux's #{pane_dead_status} stays empty until tmux reaps the child);
        # its `trap :` lets it outlive the Ctrl-C its child gets, and is reset to the default in the child.
        self._status = tmp_path / f"{name}.status"
        script = f"trap : INT; {shlex.join(command)}; echo $? > {shlex.quote(str(self._status))}"
        self._tmux("-f", str(config), "new-session", "-d", "-x", "160", "-y", "50", "sh", "-c", script)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p")

    def press(self, key: str) -> None:
        self._tmux("send-keys", key)

    def exit_status(self) -> str | None:
        """The command's exit status once it has exited, else None."""
        text = self._status.read_text() if self._status.exists() else ""
        return text.strip() if text.endswith("\n") else None

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[[list[str]], Terminal]]:
    """Start commands in tmux panes; every tmux server started is killed afterwards."""
    opened: list[Terminal] = []

    def open_terminal(command: list[str]) -> Terminal:
        opened.append(Terminal(tmp_path, command))
        return opened[-1]

    yield open_terminal
    for t in opened:
        t.close()


def row(screen: str, first_cell: str) -> list[str] | None:
    """The cells of the table row whose first cell is `first_cell`, or None if no such row shows."""
    for line in screen.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] == first_cell:
            return cells
    return None


def app_rate(screen: str) -> float:
    cells = row(screen, APP)
    return float(cells[1]) if cells else 0.0


def test_top_shows_the_apps_rate_rising_under_load_and_ctrl_c_ends_it_cleanly(
    cluster: LocalContainerManager, load: None, terminal
) -> None:
    term = terminal(top_command(cluster, "--interval", "0.5"))
    wait_until(lambda: app_rate(term.screen()) > 0, timeout_s=30, what="a non-zero rate in the app's row")
    screen = term.screen()
    assert f"cluster {cluster.cluster_name}" in screen and "frontends 1/1 up" in screen
    assert screen.count("clipper top ·") == 1, screen  # each refresh redrew the frame in place
    model = row(screen, f"{APP}:1 *")
    assert model is not None and model[1] == "1", screen  # the current version, with its one replica
    assert float(model[2]) > 0, screen  # predictions/s

    term.press("C-c")
    wait_until(lambda: term.exit_status() is not None, timeout_s=10, what="top to exit on Ctrl-C")
    assert term.exit_status() == "0"
    assert "Traceback" not in term.screen() and "KeyboardInterrupt" not in term.screen()


def test_once_prints_one_frame_with_rates_and_exits(cluster: LocalContainerManager, load: None) -> None:
    done = subprocess.run(
        top_command(cluster, "--once", "--interval", "0.5"),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert done.returncode == 0, done.stderr
    assert app_rate(done.stdout) > 0, done.stdout
    assert row(done.stdout, f"{APP}:1 *") is not None, done.stdout
    assert "frontends 1/1 up" in done.stdout


def test_help_names_every_option() -> None:
    result = CliRunner().invoke(cli, ["top", "--help"])
    assert result.exit_code == 0
    assert all(option in result.output for option in ("--interval", "--once", "Ctrl-C", "--cluster NAME"))


def copy_of_cluster(
    cluster: LocalContainerManager, state_dir: Path, **changes: object
) -> LocalContainerManager:
    """Another state directory for the same cluster's addresses (with `changes`), as a stale copy would be."""
    info = ClusterInfo.model_validate_json(cluster.cluster_file.read_text()).model_copy(update=changes)
    state_dir.mkdir(parents=True)
    (state_dir / "cluster.json").write_text(info.model_dump_json())
    return LocalContainerManager(cluster_name=cluster.cluster_name, state_dir=state_dir)


def test_once_with_no_such_cluster_or_a_stopped_one_says_so_in_one_line(
    cluster: LocalContainerManager, tmp_path: Path
) -> None:
    ghost = LocalContainerManager(cluster_name="ghost", state_dir=tmp_path / "ghost")
    done = subprocess.run(top_command(ghost, "--once"), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "No cluster named 'ghost'" in done.stderr, done.stderr

    port = free_port()
    stopped = copy_of_cluster(cluster, tmp_path / "stopped", management_port=port)
    done = subprocess.run(top_command(stopped, "--once"), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stdout
    assert done.stderr.count("\n") == 1 and f"127.0.0.1:{port} is unreachable" in done.stderr, done.stderr


def test_a_refused_token_is_one_line_and_the_live_view_retries_until_it_is_right(
    cluster: LocalContainerManager, tmp_path: Path, terminal
) -> None:
    wrong = copy_of_cluster(cluster, tmp_path / "wrong")
    secrets = ClusterSecrets(wrong.state_dir / "secrets")
    secrets.enable({AUTH_TOKEN: True}, {AUTH_TOKEN: "not-the-token"})
    done = subprocess.run(top_command(wrong, "--once"), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stdout
    assert done.stderr.count("\n") == 1 and "refused the admin token (401)" in done.stderr, done.stderr

    term = terminal(top_command(wrong, "--interval", "0.2"))
    wait_until(lambda: "refused the admin token" in term.screen(), timeout_s=20, what="the message on screen")
    assert "retrying" in term.screen() and term.exit_status() is None

    token = cluster.get_admin_token()
    assert token is not None
    secrets.write(AUTH_TOKEN, token)
    wait_until(lambda: row(term.screen(), APP) is not None, timeout_s=20, what="the app's row once let in")
    assert "refused" not in term.screen()
    term.press("C-c")
    wait_until(lambda: term.exit_status() is not None, timeout_s=10, what="top to exit on Ctrl-C")
    assert term.exit_status() == "0" and "Traceback" not in term.screen()
