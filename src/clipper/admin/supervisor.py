"""A local cluster's supervisor: `python -m clipper.admin.supervisor`, one per cluster, started by
`LocalContainerManager.start_clipper()`.

Its one job: keep the processes recorded under `<state_dir>/procs` running. A process that exits without
having been marked `stopping` is started again with the same command, environment and role (its log is
appended to), after a per-role exponential backoff, and its record gets the new pid and start time.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from clipper.admin.managers.process import SUPERVISOR_ROLE, ProcessRecord, ProcessTable, is_alive

logger = logging.getLogger(__name__)


class SupervisorSettings(BaseSettings):
    """What the supervisor reads from its environment (`CLIPPER_*`)."""

    model_config = SettingsConfigDict(env_prefix="CLIPPER_", frozen=True)
    state_dir: Path = Field(description="The cluster's state directory (records under procs/).")
    supervisor_poll_ms: int = Field(default=100, gt=0, description="How often the records are checked.")
    restart_backoff_min_ms: int = Field(default=100, gt=0, description="Wait before a first restart.")
    restart_backoff_max_ms: int = Field(default=10_000, gt=0, description="Longest wait between restarts.")
    restart_stable_after_s: float = Field(
        default=10.0, gt=0, description="A process up this long has its backoff reset to the minimum."
    )
    log_level: str = "INFO"


@dataclass(slots=True)
class _RoleState:
    """Restart bookkeeping of one role: consecutive attempts, when it was last started, when it is due."""

    attempt: int = 0
    started_at: float | None = None
    due_at: float | None = None
    exit_status: str = "unknown"


class Supervisor:
    """Restarts the table's processes that exit unless marked `stopping`; never its own record's role."""

    def __init__(
        self,
        table: ProcessTable,
        settings: SupervisorSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        self._settings = settings
        self._clock = clock
        self._roles: dict[str, _RoleState] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._exit_status: dict[int, int] = {}

    def delay_s(self, attempt: int) -> float:
        """Backoff before restart number `attempt` (1, 2, ...): the minimum, doubling, capped."""
        s = self._settings
        return min(s.restart_backoff_max_ms, s.restart_backoff_min_ms << min(attempt - 1, 30)) / 1000

    def poll_once(self) -> None:
        """Reap our children, note newly dead processes and restart those whose backoff has passed."""
        self._reap()
        now = self._clock()
        for rec in self._table.records():
            if rec.role == SUPERVISOR_ROLE or rec.stopping or is_alive(rec):
                continue
            state = self._roles.setdefault(rec.role, _RoleState())
            if state.due_at is None:
                recent = state.started_at is not None and now - state.started_at < (
                    self._settings.restart_stable_after_s
                )
                state.attempt = state.attempt + 1 if recent else 1
                state.due_at = now + self.delay_s(state.attempt)
                state.exit_status = self._describe_exit(rec.pid)
            if now >= state.due_at:
                state.due_at = None
                self._restart(rec, state, now)

    def _restart(self, rec: ProcessRecord, state: _RoleState, now: float) -> None:
        restarted = self._table.restart(rec)
        if restarted is None:
            return  # stopped, forgotten or replaced meanwhile: nothing to do
        fresh, proc = restarted
        self._children[proc.pid] = proc
        state.started_at = now
        logger.warning(
            "Restarted %s (exit status %s, attempt %d): pid %d",
            rec.role,
            state.exit_status,
            state.attempt,
            fresh.pid,
        )

    def _reap(self) -> None:
        """Collect the exit status of processes we started, so none stays a zombie."""
        for pid, proc in list(self._children.items()):
            code = proc.poll()
            if code is not None:
                del self._children[pid]
                self._exit_status[pid] = code

    def _describe_exit(self, pid: int) -> str:
        code = self._exit_status.pop(pid, None)
        if code is None:
            return "unknown (not started by the supervisor)"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return str(code)

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set or our record no longer names this process (another took over)."""
        logger.info("Supervising %s", self._table.procs_dir)
        while not stop.is_set():
            own = self._table.get(SUPERVISOR_ROLE)
            if own is None or own.pid != os.getpid() or own.stopping:
                logger.info("No longer the cluster's supervisor; exiting")
                return
            self.poll_once()
            stop.wait(self._settings.supervisor_poll_ms / 1000)


def _wait_for_own_record(table: ProcessTable, timeout_s: float) -> bool:
    """Our starter writes our record just after starting us: wait for it to name this process."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        own = table.get(SUPERVISOR_ROLE)
        if own is not None and own.pid == os.getpid() and is_alive(own):
            return True
        time.sleep(0.02)
    return False


def main() -> None:
    settings = SupervisorSettings()  # state_dir comes from the environment
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    table = ProcessTable(settings.state_dir)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not _wait_for_own_record(table, timeout_s=10.0):
            logger.error("No record names this process as the supervisor of %s; exiting", settings.state_dir)
            raise SystemExit(1)
        Supervisor(table, settings).run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logger.info("Supervisor stopped")


if __name__ == "__main__":
    main()
