"""One pydantic-settings class per process kind; environment prefix CLIPPER_; units in names."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

SECRETS_DIR_VARIABLE = "CLIPPER_SECRETS_DIR"
RPC_FRAMES_BESIDES_OUTPUTS = 6  # frames of an RPC message besides its inputs or outputs, at most


def _frontend_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def reveal(secret: SecretStr | None) -> str | None:
    """The plain value of an optional secret, for the one call that must send it."""
    return secret.get_secret_value() if secret is not None else None


class ClipperSettings(BaseSettings):
    """Base of every settings class: secret fields may also come from files in `$CLIPPER_SECRETS_DIR`.

    Each file is named after its field (`auth_token`, `rpc_token`, ...), so a secret never has to sit in
    a process's environment, where `ps e`, `docker inspect` and manifests show it. Variables win over files.
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        directory = os.environ.get(SECRETS_DIR_VARIABLE)
        if not directory:
            return init_settings, env_settings, dotenv_settings
        if not Path(directory).is_dir():
            raise ValueError(f"{SECRETS_DIR_VARIABLE}={directory} is not a directory")
        files = SecretsSettingsSource(settings_cls, secrets_dir=directory, env_prefix="")
        return init_settings, env_settings, dotenv_settings, files


class QueryFrontendSettings(ClipperSettings):
    """What a query frontend reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="CLIPPER_", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379"
    redis_password: SecretStr | None = Field(
        default=None, description="Sent to Redis apart from the URL, so logs never show it."
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=1337, ge=0, le=65535)
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="This frontend's own port for /metrics and /health (0: a free one). Frontends may share "
        "the query port, where any of them answers; scrapes need one that reaches this frontend alone.",
    )
    rpc_host: str = "127.0.0.1"
    rpc_port: int = Field(default=7000, ge=0, le=65535)
    frontend_id: str = Field(default_factory=_frontend_id)
    cache_size_bytes: int = Field(default=32 * 1024 * 1024, ge=0, description="0 turns the cache off.")
    queue_max_entries: int = Field(default=10_000, gt=0, description="Per model version; past it, 503.")
    batch_wait_ms: float = Field(default=0.0, ge=0, description="Wait for more queries before a batch.")
    max_batch_size_entries: int = Field(default=1024, gt=0, description="Cap of the adaptive batch size.")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="Larger predict bodies get 413.")
    keepalive_timeout_s: float = Field(
        default=75.0,
        gt=0,
        description="Idle client connections close after; keep it above any load balancer's.",
    )
    max_header_bytes: int = Field(default=64 * 1024, gt=0, description="A longer request head gets 431.")
    header_timeout_s: float = Field(default=20.0, gt=0, description="A head slower than this gets 408.")
    body_timeout_s: float = Field(
        default=60.0, gt=0, description="A body stalled this long, or slower than 16 KiB/s past it, gets 408."
    )
    max_connections: int = Field(
        default=10_000, gt=0, description="Open HTTP connections; lowered at start to fit the open-file limit"
    )
    max_inputs_per_request: int | None = Field(
        default=None, gt=0, description="Larger input_batch gets 413; unset: queue_max_entries."
    )
    heartbeat_interval_ms: int = Field(default=1000, gt=0)
    container_timeout_ms: int = Field(default=30_000, gt=0, description="Idle container is dropped after.")
    rpc_max_message_bytes: int = Field(
        default=256 * 1024 * 1024, gt=0, description="Largest RPC message a container may send (a batch)."
    )
    rpc_max_message_frames: int = Field(
        default=65_536, gt=0, description="Most frames in one RPC message; keep above max_batch_size_entries."
    )
    rpc_max_command_bytes: int = Field(default=16 * 1024, gt=0, description="Largest ZMTP command accepted.")
    rpc_handshake_timeout_ms: int = Field(
        default=5_000, gt=0, description="A connection must finish ZMTP and register within this."
    )
    rpc_max_connections: int = Field(default=1024, gt=0, description="Past it, new RPC connections close.")
    rpc_batch_timeout_ms: int = Field(
        default=60_000, gt=0, description="A replica holding a batch longer (and the longest SLO) is dropped."
    )
    frontend_ttl_ms: int = Field(default=5_000, gt=0, description="Registry entry lifetime without refresh.")
    selection_seed: int | None = Field(
        default=None,
        description="Seed of the selection policies' random draws (per app), for reproducible experiments "
        "and tests; unset: seeded by the OS.",
    )
    drain_timeout_ms: int = Field(default=10_000, ge=0, description="On stop, time to answer held queries.")
    ready_timeout_ms: int = Field(
        default=10_000,
        ge=0,
        description="On start, longest wait for the replicas serving through other frontends to join.",
    )
    rpc_token: SecretStr | None = Field(
        default=None, description="Containers must present it (ZMTP PLAIN); unset accepts any container."
    )
    query_token: SecretStr | None = Field(
        default=None, description="Predict requests must carry `Authorization: Bearer <token>`; unset: open."
    )
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _a_full_batch_fits_one_message(self) -> QueryFrontendSettings:
        """A batch answer carries one frame per output plus 6: a cap below that drops every full batch."""
        if self.rpc_max_message_frames < self.max_batch_size_entries + RPC_FRAMES_BESIDES_OUTPUTS:
            raise ValueError(
                f"rpc_max_message_frames ({self.rpc_max_message_frames}) must be at least "
                f"max_batch_size_entries + {RPC_FRAMES_BESIDES_OUTPUTS} "
                f"({self.max_batch_size_entries + RPC_FRAMES_BESIDES_OUTPUTS})"
            )
        return self


class ManagementFrontendSettings(ClipperSettings):
    """What the management frontend reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="CLIPPER_", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379"
    redis_password: SecretStr | None = Field(
        default=None, description="Sent to Redis apart from the URL, so logs never show it."
    )
    http_host: str = "127.0.0.1"
    management_port: int = Field(default=1338, ge=0, le=65535)
    auth_token: SecretStr | None = Field(
        default=None, description="/admin calls must carry `Authorization: Bearer <token>`; unset: open."
    )
    query_token: SecretStr | None = Field(
        default=None, description="Sent when scraping the query frontends' /metrics (the cluster view)."
    )
    log_level: str = "INFO"
    # How this frontend acts on the cluster's replicas (set_num_replicas, get_replicas, get_model_logs);
    # each manager sets these for the management frontend it starts. "none": those calls answer 501.
    replica_control: Literal["none", "local", "docker", "kubernetes"] = "none"
    cluster_name: str = "default-cluster"
    state_dir: Path | None = Field(
        default=None, description="local: the cluster's state directory; docker: the host's, mounted as is."
    )
    namespace: str = Field(default="default", description="kubernetes: the cluster's namespace.")
    max_replicas: int = Field(default=32, ge=1, description="Most replicas set_num_replicas may ask for.")


class AdminClientSettings(ClipperSettings):
    """Tokens an admin client sends to a cluster its manager cannot read them from (a remote one)."""

    model_config = SettingsConfigDict(env_prefix="CLIPPER_", frozen=True)

    auth_token: SecretStr | None = Field(default=None, description="Sent as the management bearer token.")
    query_token: SecretStr | None = Field(default=None, description="Sent as the predict bearer token.")


class ContainerSettings(ClipperSettings):
    """A model container's environment, with Clipper's variable names (reference §4.7)."""

    model_config = SettingsConfigDict(env_prefix="CLIPPER_", frozen=True)

    model_name: str
    model_version: str
    ip: str = "127.0.0.1"
    port: int = Field(default=7000, ge=1, le=65535)
    input_type: str = "doubles"
    input_shape: str | None = Field(
        default=None,
        description="Ours: each input's shape, comma-separated (`28,28`); batches arrive "
        "as one (batch, *shape) array. Unset: Clipper's (batch, length) arrays.",
    )
    model_path: str = "/model"
    heartbeat_interval_ms: int = Field(default=1000, gt=0)
    frontend_timeout_ms: int = Field(default=30_000, gt=0)
    busy_poll_us: int = Field(
        default=200, ge=0, description="After a message, poll this long before sleeping (0: never spin)."
    )
    predict_module: str | None = Field(
        default=None, description="'pkg.module:function' to serve instead of <model_path>/func.pkl."
    )
    ready_file: str | None = Field(default=None, description="Written once the model is loaded.")
    rpc_token: SecretStr | None = Field(
        default=None, description="Presented to frontends (ZMTP PLAIN password) when set."
    )
