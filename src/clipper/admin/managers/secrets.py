"""A cluster's secrets as files: one owner-only file per secret in an owner-only directory.

Processes get the directory's path (`CLIPPER_SECRETS_DIR`), never a value, so no secret appears in an
environment, a process record, a command line or a log. The settings classes read each file by its field
name. A secret is made once per state directory and reused by every later start of the cluster.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from clipper.errors import ClusterError

AUTH_TOKEN = "auth_token"
RPC_TOKEN = "rpc_token"
QUERY_TOKEN = "query_token"
REDIS_PASSWORD = "redis_password"
REDIS_CONFIG = "redis.conf"


class ClusterSecrets:
    """The secrets directory of one cluster (`<state_dir>/secrets`, mode 0700, files 0600)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / name

    def read(self, name: str) -> str | None:
        """The secret's value, or None if the cluster has none of that name (or it is unreadable)."""
        try:
            return self.path(name).read_text().strip() or None
        except OSError:
            return None

    def enable(self, wanted: dict[str, bool], given: dict[str, str] | None = None) -> None:
        """Keep, create or (for `False`) delete each named secret; `given` values replace stored ones.

        A process reads every file present, so a check turned off must have no file.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        for name, on in wanted.items():
            if not on:
                self.path(name).unlink(missing_ok=True)
            elif given is not None and name in given:
                self.write(name, given[name])
            elif self.read(name) is None:
                self.write(name, secrets.token_urlsafe(32))

    def enable_cluster(self, auth: dict[str, bool], external_redis: bool, redis_password: str | None) -> None:
        """A start's secrets: the tokens `auth` switches on, and the Redis password (made for our own Redis;
        for an external one only when given, and then the given one)."""
        wanted = {**auth, REDIS_PASSWORD: not external_redis or redis_password is not None}
        self.enable(wanted, {REDIS_PASSWORD: redis_password} if redis_password is not None else {})

    def write(self, name: str, value: str) -> Path:
        """Write one file with mode 0600 from its creation on (never briefly readable by others)."""
        if not value or "\n" in value:
            raise ClusterError(f"secret {name} must be one non-empty line")
        path = self.path(name)
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        return path

    def redis_config(self) -> Path | None:
        """A redis.conf (0600) that sets the cluster's Redis password, or None when it has none."""
        password = self.read(REDIS_PASSWORD)
        if password is None:
            self.path(REDIS_CONFIG).unlink(missing_ok=True)
            return None
        return self.write(REDIS_CONFIG, redis_config_text(password))


def redis_config_text(password: str) -> str:
    """redis.conf setting the password, so it is never on Redis's command line."""
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    return f'requirepass "{quoted}"'
