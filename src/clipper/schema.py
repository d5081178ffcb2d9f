"""Records of the cluster's state, shared by the management API, the admin client and the CLI.

Field names are Clipper's wire names (reference §3.1, §5) so a Clipper 0.4 client reads them unchanged.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

NO_CONTAINER = "NO_CONTAINER"
DEFAULT_POLICY = "DefaultOutputSelectionPolicy"
NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
FORBIDDEN_NAME_CHARS = (",", ":")


def check_dns_label(kind: str, value: str) -> str:
    """Clipper's client-side rule for model names and versions (DNS-1123 label)."""
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"Invalid value: {value!r}: {kind} must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc')"
        )
    return value


def _app_name(value: str) -> str:
    return check_dns_label("application name", value)


AppName = Annotated[str, AfterValidator(_app_name)]


class App(BaseModel):
    """An application: the REST endpoint `/<name>/predict`, its input type, SLO and default output."""

    model_config = ConfigDict(frozen=True)
    name: str
    input_type: str = Field(description="One of bytes, integers, floats, doubles, strings.")
    default_output: str = Field(description="Answer returned when no model replies within the SLO.")
    latency_slo_micros: int = Field(description="End-to-end budget per query, in microseconds.")
    policy: str = DEFAULT_POLICY


class AppInfo(BaseModel):
    """`get_application` reply: the app plus its linked models."""

    name: str
    input_type: str
    default_output: str
    latency_slo_micros: int
    linked_models: list[str]


class Model(BaseModel):
    """One version of a model, as stored in Redis DB 2."""

    model_config = ConfigDict(frozen=True)
    model_name: str
    model_version: str
    input_type: str
    labels: list[str] = Field(default_factory=list)
    container_name: str = NO_CONTAINER
    model_data_path: str = "DEPRECATED"
    batch_size: int = Field(default=-1, description="Largest batch sent to a replica; -1 = adaptive.")

    @property
    def model_id(self) -> str:
        return f"{self.model_name}:{self.model_version}"


class ModelInfo(BaseModel):
    """`get_model` / verbose `get_all_models` reply (Clipper omits batch_size)."""

    model_name: str
    model_version: str
    input_type: str
    labels: list[str]
    container_name: str
    model_data_path: str
    is_current_version: bool


class Container(BaseModel):
    """A connected model-container replica, as stored in Redis DB 3."""

    model_config = ConfigDict(frozen=True)
    model_name: str
    model_version: str
    model_replica_id: int
    input_type: str
    frontend_id: str = Field(default="", description="The query frontend this connection belongs to.")
    zmq_connection_id: int = 0

    @property
    def model_id(self) -> str:
        return f"{self.model_name}:{self.model_version}"

    @property
    def key(self) -> str:
        return f"{self.model_name},{self.model_version},{self.model_replica_id}"


class ContainerInfo(BaseModel):
    """Verbose `get_all_containers` / `get_container` reply."""

    model_id: str
    model_name: str
    model_version: str
    model_replica_id: int
    input_type: str


class Frontend(BaseModel):
    """A live query frontend, registered with a heartbeat so containers and peers can find it."""

    model_config = ConfigDict(frozen=True)
    frontend_id: str
    rpc_address: str = Field(description="host:port where model containers dial this frontend.")
    http_address: str
