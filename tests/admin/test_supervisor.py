"""The supervisor against real processes and a driven clock: restarts, backoff, and stops it never undoes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from clipper.admin.managers.process import ProcessRecord, ProcessTable, is_alive
from clipper.admin.supervisor import Supervisor, SupervisorSettings
from tests.conftest import wait_until


class Clock:
    """A monotonic clock the test moves by hand (in binary fractions of a second, so sums are exact)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table(tmp_path: Path) -> Iterator[ProcessTable]:
    table = ProcessTable(tmp_path)
    yield table
    table.stop(table.records(), graceful=False)


def spawn_server(table: ProcessTable, role: str) -> ProcessRecord:
    """A long-running real process: Python's http.server on an ephemeral loopback port."""
    return table.spawn(role, ["http.server", "--bind", "127.0.0.1", "0"], {"CLIPPER_X": role})


def kill(rec: ProcessRecord) -> None:
    """SIGKILL without reaping: the exit status stays for the supervisor (whose children these are)."""
    psutil.Process(rec.pid).kill()
    wait_until(lambda: not is_alive(rec), 10, f"{rec.role} to die")


def make_supervisor(table: ProcessTable, clock: Clock) -> Supervisor:
    settings = SupervisorSettings(
        state_dir=table.state_dir,
        restart_backoff_min_ms=125,
        restart_backoff_max_ms=500,
        restart_stable_after_s=10,
    )
    return Supervisor(table, settings, clock=clock)


def test_killed_process_restarts_with_its_command_and_env_after_a_doubling_backoff(
    table: ProcessTable, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    sup = make_supervisor(table, clock)
    first = spawn_server(table, "web")
    delays = []
    for _ in range(4):
        rec = table.get("web")
        assert rec is not None
        kill(rec)
        sup.poll_once()  # notices the death, schedules the restart
        start = clock.now
        while (fresh := table.get("web")) is not None and fresh.pid == rec.pid:
            assert clock.now - start < 1, "no restart within the largest backoff"
            clock.now += 0.0625
            sup.poll_once()
        delays.append(clock.now - start)
        assert fresh is not None and is_alive(fresh)
    assert delays == [0.125, 0.25, 0.5, 0.5]  # doubling, capped at the maximum
    restarts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Restarted web")]
    assert "not started by the supervisor), attempt 1" in restarts[0]
    assert "(exit status killed by SIGKILL, attempt 4)" in restarts[3]
    assert fresh.cmd == first.cmd and fresh.env == first.env and fresh.log_path == first.log_path
    assert psutil.Process(fresh.pid).environ()["CLIPPER_X"] == "web"

    clock.now += 10  # it stayed up long enough: the next death starts again at the minimum
    kill(fresh)
    sup.poll_once()
    clock.now += 0.125
    sup.poll_once()
    again = table.get("web")
    assert again is not None and again.pid != fresh.pid and is_alive(again)


def test_a_process_stopped_on_purpose_is_never_restarted(table: ProcessTable) -> None:
    clock = Clock()
    sup = make_supervisor(table, clock)
    stopped, other = spawn_server(table, "stopped"), spawn_server(table, "other")
    table.stop([stopped])
    kill(other)
    for _ in range(5):
        clock.now += 1
        sup.poll_once()
    assert table.get("stopped") is None and not is_alive(stopped)
    restarted = table.get("other")
    assert restarted is not None and restarted.pid != other.pid  # the supervisor did poll meanwhile


def test_stop_marks_first_so_a_restart_racing_it_does_nothing(table: ProcessTable) -> None:
    """The supervisor saw the process dead; before it restarts it, someone stops the role."""
    rec = spawn_server(table, "racy")
    kill(rec)
    seen_dead = table.get("racy")
    assert seen_dead is not None and not is_alive(seen_dead)
    marked = table.mark_stopping(seen_dead)
    assert marked.stopping
    assert table.restart(seen_dead) is None  # what the supervisor's restart does now: nothing
    table.stop([seen_dead])
    assert table.records() == []


def test_stop_takes_the_process_a_restart_started_after_the_caller_read_the_record(
    table: ProcessTable,
) -> None:
    old = spawn_server(table, "web")
    kill(old)
    restarted = table.restart(old)
    assert restarted is not None
    fresh, proc = restarted
    table.stop([old])  # the caller still holds the record of the dead process
    assert proc.wait(10) is not None and not is_alive(fresh)
    assert table.records() == []
