"""Local process bookkeeping: the cluster's state directory, process records, start, liveness and stop.

A record (`procs/<role>.json` plus `procs/<role>.pid`) keeps a process's pid and start time, so another
interpreter finds it again and a recycled pid is never mistaken for it (or killed). The cluster's supervisor
restarts any recorded process that exits unless its record says `stopping`; marking and restarting both hold
`procs/.lock`, so a process stopped on purpose is never brought back.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psutil
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from clipper.errors import ClusterError

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
SUPERVISOR_ROLE = "supervisor"  # the record of the process that restarts the others (admin/supervisor.py)


class ClientSettings(BaseSettings):
    """Where local clusters keep their state: `$CLIPPER_HOME` (default `~/.clipper`)."""

    model_config = SettingsConfigDict(env_prefix="CLIPPER_", frozen=True)
    home: Path = Field(default_factory=lambda: Path.home() / ".clipper")


def cluster_state_dir(cluster_name: str, state_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cluster's directory: `state_dir` if given, else `<home>/clusters/<cluster_name>`."""
    if state_dir is not None:
        return Path(state_dir)
    return ClientSettings().home / "clusters" / cluster_name


class ProcessRecord(BaseModel):
    """What is known of one started process: enough to find, describe and stop it from anywhere."""

    role: str = Field(description="redis, management, query, or model-<name>-<version>-<n>.")
    pid: int
    create_time: float = Field(description="psutil start time; tells the process from a recycled pid.")
    cmd: list[str]
    env: dict[str, str] = Field(description="The CLIPPER_* variables the process was given.")
    ports: dict[str, int] = Field(default_factory=dict)
    log_path: str
    model_name: str | None = None
    model_version: str | None = None
    stopping: bool = Field(default=False, description="Being stopped on purpose: never restart it.")


class ClusterInfo(BaseModel):
    """`cluster.json`: how another interpreter reaches a running cluster."""

    cluster_name: str
    query_port: int
    management_port: int
    rpc_port: int
    redis_host: str
    redis_port: int
    external_redis: bool
    cache_size_bytes: int


def port_is_free(port: int) -> bool:
    """True if nothing listens on `port` (so we may bind it).

    SO_REUSEADDR as the servers themselves bind: connections of a stopped cluster lingering in TIME_WAIT
    (a client's keep-alive) do not make the port look taken.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """An ephemeral port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_holder(port: int) -> str | None:
    """`pid N (name)` of the process listening on `port`, when this user may see it."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return None
    return None


def choose_port(requested: int, taken: set[int], role: str) -> int:
    """The port asked for (a default counts as asked for), or an error naming what holds it.

    Only 0 leaves the choice to us: then a free port is taken and said loudly. A cluster that moved to
    another port without a word would be reached by nobody at the address its users know.
    """
    if requested == 0:
        port = free_port()
        while port in taken:
            port = free_port()
        logger.warning("The %s port was left to choose (0): using %d", role, port)
        return port
    if requested in taken:
        raise ClusterError(f"Port {requested} is asked for twice (the {role} port and another)")
    if not port_is_free(requested):
        holder = port_holder(requested)
        raise ClusterError(
            f"The {role} port {requested} is in use{f' by {holder}' if holder else ''}; stop that process "
            f"or choose another {role} port (0 lets clipper pick a free one)"
        )
    return requested


class ProcessTable:
    """The records under `<state_dir>/procs`: write, read, check and stop the cluster's processes."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.procs_dir = state_dir / "procs"
        self.logs_dir = state_dir / "logs"

    def spawn(self, role: str, args: list[str], env: dict[str, str], **fields: object) -> ProcessRecord:
        """Start `python -m <args>` in its own session, logging to `logs/<role>.log`, and record it."""
        return self.spawn_program(role, [sys.executable, "-m", *args], env, **fields)

    def spawn_program(
        self, role: str, cmd: list[str], env: dict[str, str], **fields: object
    ) -> ProcessRecord:
        """Start any program as `spawn` starts a Python module (e.g. a Prometheus server)."""
        self.procs_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"{role}.log"
        return self.record(role, _popen(cmd, env, log_path), cmd, env, log_path, **fields)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the table's lock (`procs/.lock`, across processes) while a record is marked or replaced."""
        self.procs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.procs_dir / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def get(self, role: str) -> ProcessRecord | None:
        """The record of `role`, or None if there is none."""
        try:
            return ProcessRecord.model_validate_json((self.procs_dir / f"{role}.json").read_text())
        except FileNotFoundError:
            return None

    def restart(self, rec: ProcessRecord) -> tuple[ProcessRecord, subprocess.Popen[bytes]] | None:
        """Start `rec`'s command again (same environment, log appended) unless it runs or is being stopped.

        Holds the lock, so it cannot interleave with `stop` marking the same record. None if nothing was
        started: the record was stopped, forgotten, marked `stopping`, or its process is alive.
        """
        with self.lock():
            current = self.get(rec.role)
            if current is None or current.stopping or current.pid != rec.pid or is_alive(current):
                return None
            proc = _popen(current.cmd, current.env, Path(current.log_path))
            try:
                create_time = psutil.Process(proc.pid).create_time()
            except psutil.NoSuchProcess:
                create_time = 0.0  # exited at once: a dead record, so the next poll restarts it again
            fresh = current.model_copy(update={"pid": proc.pid, "create_time": create_time})
            self._write(fresh)
            return fresh, proc

    def _write(self, rec: ProcessRecord) -> None:
        """Replace the record files atomically: the supervisor reads them while we write."""
        self.procs_dir.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".json", rec.model_dump_json(indent=2)), (".pid", f"{rec.pid}\n")):
            tmp = self.procs_dir / f".{rec.role}{suffix}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.procs_dir / f"{rec.role}{suffix}")

    def record(
        self,
        role: str,
        proc: subprocess.Popen[bytes],
        cmd: list[str],
        env: dict[str, str],
        log_path: Path,
        **fields: object,
    ) -> ProcessRecord:
        """Write the record and pid file of a process we started."""
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            raise ClusterError(f"{role} exited at once; see {log_path}") from None
        rec = ProcessRecord(
            role=role,
            pid=proc.pid,
            create_time=create_time,
            cmd=cmd,
            env=env,
            log_path=str(log_path),
            **fields,
        )
        self._write(rec)
        return rec

    def records(self) -> list[ProcessRecord]:
        """Every recorded process, alive or not, sorted by role."""
        if not self.procs_dir.is_dir():
            return []
        return [
            ProcessRecord.model_validate_json(p.read_text()) for p in sorted(self.procs_dir.glob("*.json"))
        ]

    def mark_stopping(self, rec: ProcessRecord) -> ProcessRecord:
        """Mark `rec`'s role as being stopped, so the supervisor leaves it; return the record as it is now."""
        with self.lock():
            current = self.get(rec.role)
            if current is None:
                return rec  # already forgotten: nobody restarts it
            marked = current.model_copy(update={"stopping": True})
            self._write(marked)
            return marked

    def forget(self, rec: ProcessRecord) -> None:
        (self.procs_dir / f"{rec.role}.json").unlink(missing_ok=True)
        (self.procs_dir / f"{rec.role}.pid").unlink(missing_ok=True)

    def stop(
        self, recs: Iterable[ProcessRecord], graceful: bool = True, timeout_s: float = STOP_TIMEOUT_S
    ) -> None:
        """SIGTERM (SIGKILL if not graceful), SIGKILL what is left after `timeout_s`; drop the records.

        Each record is first marked `stopping` under the lock, and re-read there: a process the supervisor
        restarted after the caller read its record is the one stopped, and none is restarted afterwards.
        """
        recs = [self.mark_stopping(r) for r in recs]
        procs = [p for p in (process_of(r) for r in recs) if p is not None]
        for p in procs:
            _signal(p, graceful)
        _, alive = psutil.wait_procs(procs, timeout=timeout_s)
        for p in alive:
            logger.warning("Process %s did not stop within %.0f s; killing it", p.pid, timeout_s)
            _signal(p, graceful=False)
        _, alive = psutil.wait_procs(alive, timeout=timeout_s)
        if alive:
            raise ClusterError(f"Could not stop processes {[p.pid for p in alive]}")
        for r in recs:
            self.forget(r)


def _popen(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session (it outlives us) with our environment minus CLIPPER_*, plus `env`."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPPER_")} | env
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
            start_new_session=True,
        )


def _signal(p: psutil.Process, graceful: bool) -> None:
    try:
        p.terminate() if graceful else p.kill()
    except psutil.NoSuchProcess:
        pass


def process_of(rec: ProcessRecord) -> psutil.Process | None:
    """The live process a record names, or None if it exited (or its pid now belongs to another)."""
    try:
        p = psutil.Process(rec.pid)
        if abs(p.create_time() - rec.create_time) > 0.01 or p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except psutil.NoSuchProcess:
        return None


def is_alive(rec: ProcessRecord) -> bool:
    return process_of(rec) is not None


def log_tail(path: str, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(check: Callable[[], bool], what: str, recs: list[ProcessRecord], timeout_s: float) -> None:
    """Poll `check()` until it is true; fail naming the log path at once if one of `recs` exits."""
    deadline = time.monotonic() + timeout_s
    while not check():
        for rec in recs:
            if not is_alive(rec):
                raise ClusterError(
                    f"{rec.role} exited before {what}; its log is {rec.log_path}:\n{log_tail(rec.log_path)}"
                )
        if time.monotonic() > deadline:
            logs = ", ".join(r.log_path for r in recs)
            raise ClusterError(f"Timed out after {timeout_s:.0f} s waiting for {what}; see {logs}")
        time.sleep(0.05)
