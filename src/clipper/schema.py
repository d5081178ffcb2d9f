"""Records of the cluster's state, shared by the management API, the admin client and the CLI.

Field names are Clipper's wire names (reference §3.1, §5) so a Clipper 0.4 client reads them unchanged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from clipper.errors import InvalidInput
from clipper.selection import DEFAULT_POLICY, POLICIES
from clipper.types import INT32_MAX, INT32_MIN, InputType

NO_CONTAINER = "NO_CONTAINER"
NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
NAME_MAX_CHARS = 63  # a DNS label's limit, and a Kubernetes label value's: a name fits every manager
FORBIDDEN_NAME_CHARS = (",", ":")
# The same two rules as (anchored) JSON Schema patterns, so the OpenAPI document states what is enforced.
DNS_LABEL_SCHEMA_PATTERN = f"^{NAME_PATTERN.pattern}$"
KEY_PART_SCHEMA_PATTERN = "^[^" + "".join(FORBIDDEN_NAME_CHARS) + "]*$"


def check_dns_label(kind: str, value: str) -> str:
    """Clipper's client-side rule for model names and versions (DNS-1123 label, so 63 characters at most)."""
    if len(value) > NAME_MAX_CHARS:
        raise ValueError(
            f"Invalid value: {value[:20]!r}... ({len(value)} characters): {kind} must be at most "
            f"{NAME_MAX_CHARS} characters (a DNS label, usable as a file, container and Kubernetes name)"
        )
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"Invalid value: {value!r}: {kind} must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc')"
        )
    return value


def _app_name(value: str) -> str:
    return check_dns_label("application name", value)


AppName = Annotated[
    str,
    AfterValidator(_app_name),
    Field(
        json_schema_extra={"pattern": DNS_LABEL_SCHEMA_PATTERN, "maxLength": NAME_MAX_CHARS},
        description="A DNS-1123 label: lower case alphanumerics and '-', alphanumeric at both ends, "
        f"at most {NAME_MAX_CHARS} characters.",
    ),
]


OverloadPolicy = Literal["reject", "default"]
_ON_OVERLOAD_HELP = (
    "When the model's queue is full: 'reject' answers HTTP 503 with Retry-After, "
    "'default' answers the default output at once. Not in Clipper 0.4; omitted means 'reject'."
)


_POLICY_HELP = (
    "Model selection policy: DefaultOutputSelectionPolicy (Clipper's: the one linked model), split, "
    "shadow, exp3 or exp4 (several linked models)."
)
_PARAMS_HELP = "The policy's parameters as validated and normalised; {} for the default policy."
_SHAPE_HELP = (
    "Ours: the shape of each input (numeric types only), e.g. [28, 28]; inputs are nested lists of that "
    "shape or flat lists of prod(shape) numbers; the model gets a (batch, *shape) array. None: any length."
)


class App(BaseModel):
    """An application: the REST endpoint `/<name>/predict`, its input type, SLO and default output."""

    model_config = ConfigDict(frozen=True)
    name: str
    input_type: str = Field(description="One of bytes, integers, floats, doubles, strings.")
    default_output: str = Field(description="Answer returned when no model replies within the SLO.")
    latency_slo_micros: int = Field(description="End-to-end budget per query, in microseconds.")
    policy: str = Field(default=DEFAULT_POLICY, description=_POLICY_HELP)
    policy_params: dict[str, Any] = Field(default_factory=dict, description=_PARAMS_HELP)
    on_overload: OverloadPolicy = Field(default="reject", description=_ON_OVERLOAD_HELP)
    input_shape: list[int] | None = Field(default=None, description=_SHAPE_HELP)


class AppInfo(BaseModel):
    """`get_application` reply: the app plus its linked models and (ours) its selection policy."""

    name: str
    input_type: str
    default_output: str
    latency_slo_micros: int
    linked_models: list[str]
    on_overload: OverloadPolicy = "reject"
    policy: str = Field(default=DEFAULT_POLICY, description=_POLICY_HELP)
    policy_params: dict[str, Any] = Field(default_factory=dict, description=_PARAMS_HELP)
    input_shape: list[int] | None = Field(default=None, description=_SHAPE_HELP)


class AppPolicy(BaseModel):
    """`get_app_policy` reply; `weights` (each linked model's share of traffic or of the vote, from the
    global state) is left out while the app has no linked model."""

    policy: str = Field(description=_POLICY_HELP)
    params: dict[str, Any] = Field(description=_PARAMS_HELP)
    weights: dict[str, float] | None = None


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
    input_shape: list[int] | None = Field(default=None, description=_SHAPE_HELP)

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
    input_shape: list[int] | None = Field(default=None, description=_SHAPE_HELP)


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
    http_address: str = Field(description="host:port of the query API, which frontends may share.")
    metrics_address: str | None = Field(
        default=None, description="host:port of this frontend's own listener, which reaches it alone."
    )

    @property
    def scrape_address(self) -> str:
        """Where to read this frontend's own /metrics: on a shared query port any peer could answer."""
        return self.metrics_address or self.http_address


# --- error bodies -----------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Clipper's JSON error body (query edge, and a 401 from the management API)."""

    error: str = Field(description="The kind of error, e.g. `Json error`.")
    cause: str = Field(description="What went wrong, naming the field or resource.")


class Detail(BaseModel):
    """Errors Clipper never produced, in FastAPI's shape (e.g. 503 while Redis is unreachable)."""

    detail: str


# --- management API requests ----------------------------------------------------------------
# Bodies of the /admin POST calls (reference §3.1). Strict like Clipper's rapidjson checks: `"5"` is not an
# int, `1.5` is not an int, `"true"` is not a bool; ints are int32. Unknown keys are refused. An integral
# number written with a fraction or exponent (`1.0`, `1e3`) is an integer, as JSON Schema (and so the
# OpenAPI document) defines it; Clipper refused those.


def _integral(value: object) -> object:
    """`1.0` -> `1`, so strict int fields accept every number JSON Schema calls an integer."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Constraints before the validator, so they stay on the integer and appear in the JSON Schema.
Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX), BeforeValidator(_integral)]


def _input_type(value: str) -> str:
    try:
        return InputType.parse(value).wire_name
    except InvalidInput as e:
        raise ValueError(e.msg) from e


InputTypeName = Annotated[
    str,
    AfterValidator(_input_type),
    Field(
        json_schema_extra={"enum": list(InputType.spellings())},
        description="bytes, integers, floats, doubles, strings or json (ours), or a Clipper alias (`d`).",
    ),
]

# Checked by the management frontend after batch_size, in Clipper's order and words (reference §3.1), so
# the pattern is documented here rather than enforced by pydantic, which would check it first.
KeyPart = Annotated[
    str,
    Field(
        json_schema_extra={"pattern": KEY_PART_SCHEMA_PATTERN},
        description="No ',' or ':' (they delimit Clipper's Redis keys and lists).",
    ),
]

# Positive or -1 (adaptive); checked first by the management frontend, with Clipper's message.
BatchSize = Annotated[
    Int32,
    Field(
        json_schema_extra={"anyOf": [{"const": -1}, {"minimum": 1}]},
        description="Largest batch sent to a replica: positive, or -1 for adaptive.",
    ),
]


def _shape_fits_type(value: list[int] | None, info: ValidationInfo) -> list[int] | None:
    """Only numeric types take a shape: strings and json inputs have no fixed number of items."""
    input_type = info.data.get("input_type")  # absent if it failed its own check, which is reported
    if value is not None and input_type is not None and not InputType.parse(input_type).is_numeric:
        raise ValueError(
            f"only numeric input types (bytes, integers, floats, doubles) take a shape, not {input_type}"
        )
    return value


# Declared after input_type, whose validated value the check reads.
InputShape = Annotated[
    list[Annotated[int, Field(gt=0, le=INT32_MAX), BeforeValidator(_integral)]] | None,
    Field(min_length=1, max_length=8, description=_SHAPE_HELP),
    AfterValidator(_shape_fits_type),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# The OpenAPI form of `_shape_fits_type`, so the schema says what the validator checks: a body with an
# `input_shape` array must name a numeric input type.
_SHAPE_NEEDS_NUMERIC = ConfigDict(
    json_schema_extra={
        "if": {"properties": {"input_shape": {"type": "array"}}, "required": ["input_shape"]},
        "then": {
            "properties": {
                "input_type": {"enum": [s for s in InputType.spellings() if InputType.parse(s).is_numeric]}
            }
        },
    }
)


class AddAppRequest(_Request):
    """`add_app`. Improvements over Clipper: the name must be a DNS-1123 label and the SLO positive."""

    model_config = _SHAPE_NEEDS_NUMERIC

    name: AppName
    input_type: InputTypeName
    default_output: str = Field(description="Answer returned when no model replies within the SLO.")
    latency_slo_micros: Annotated[int, BeforeValidator(_integral)] = Field(
        gt=0, le=INT32_MAX, description="End-to-end budget per query, in µs."
    )
    on_overload: OverloadPolicy = Field(default="reject", description=_ON_OVERLOAD_HELP)
    input_shape: InputShape = None


class AppNameRequest(_Request):
    """`delete_app`, `get_application`."""

    name: str


class AddModelRequest(_Request):
    """`add_model`: register a model version and make it current."""

    model_config = _SHAPE_NEEDS_NUMERIC

    model_name: KeyPart
    model_version: KeyPart
    labels: list[KeyPart]
    input_type: InputTypeName
    container_name: str = Field(description=f"Image of the model's containers, or {NO_CONTAINER}.")
    model_data_path: str
    batch_size: BatchSize
    input_shape: InputShape = None


class ModelVersionRequest(_Request):
    """`delete_versioned_model`, `set_model_version`, `get_model`."""

    model_name: str
    model_version: str


class ModelLinksRequest(_Request):
    """`delete_model_links`."""

    app_name: str
    model_names: list[str]


class AddModelLinksRequest(_Request):
    """`add_model_links`: link one model per call; a second one only to an app with a multi-model policy.

    The length is checked by the management frontend after the app and models are found (Clipper's
    order and messages), so it is documented here rather than enforced by pydantic.
    """

    app_name: str
    model_names: list[str] = Field(json_schema_extra={"minItems": 1, "maxItems": 1})


class AppLinksRequest(_Request):
    """`get_linked_models`."""

    app_name: str


class VerboseRequest(_Request):
    """`get_all_applications`, `get_all_models`, `get_all_containers`: names only, or full records."""

    verbose: bool


class ContainerRequest(_Request):
    """`get_container`."""

    model_name: str
    model_version: str
    replica_id: Int32


class StateRequest(_Request):
    """`get_state`: Clipper keeps one state per app, so any uid reads uid 0."""

    app_name: str
    uid: Int32


def _policy_name(value: str) -> str:
    if value not in POLICIES:
        raise ValueError(f"unknown policy {value!r}; use one of: {', '.join(POLICIES)}")
    return value


def _policy_enum(schema: dict[str, Any]) -> None:
    """State the known policies in the JSON Schema, as `_policy_name` enforces them."""
    schema["enum"] = list(POLICIES)


PolicyName = Annotated[
    str, AfterValidator(_policy_name), Field(json_schema_extra=_policy_enum, description=_POLICY_HELP)
]


class SetAppPolicyRequest(_Request):
    """`set_app_policy` (ours): the app's selection policy and its params, checked against its linked
    models (e.g. split weights must name them) before anything is written."""

    name: str
    policy: PolicyName
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The policy's parameters: `weights` {model: share} for split, `primary` for shadow, "
        "`gamma` and `per_user` for exp3, `eta`, `confidence`, `tolerance` and `per_user` for exp4.",
    )


# --- replica management (ours): scale, list and read the logs of a model version's replicas -----------

MAX_LOG_LINES = 1000  # per replica and request: the dashboard shows a screenful, not the whole file


class SetNumReplicasRequest(_Request):
    """`set_num_replicas` (ours): start or stop replicas of a registered version until this many run."""

    model_name: str
    model_version: str
    num_replicas: Annotated[int, Field(ge=0, le=INT32_MAX), BeforeValidator(_integral)] = Field(
        description="Replicas wanted; at most the frontend's `max_replicas` (CLIPPER_MAX_REPLICAS: 32)."
    )


class ReplicasQuery(_Request):
    """`get_replicas` (ours): query parameters naming one model version."""

    model_config = ConfigDict(strict=False)  # query values are strings: "5" is the int 5
    model_name: str
    model_version: str


class ModelLogsQuery(ReplicasQuery):
    """`get_model_logs` (ours): the version, and how many of each replica's last lines."""

    lines: int = Field(default=100, ge=1, le=MAX_LOG_LINES, description="Last lines of each replica's log.")


class ReplicaInfo(BaseModel):
    """One running replica as its manager sees it: a local process, a Docker container or a pod."""

    replica: str = Field(description="pid, container id or pod name.")
    kind: Literal["process", "container", "pod"]
    started_at: float | None = Field(description="Start time, seconds since the epoch (wall clock).")
    uptime_s: float | None
    state: str = Field(description="running, or the manager's word: restarting, Pending, exited...")


class ModelLogs(BaseModel):
    """`get_model_logs` reply: each replica's last lines, prefixed with `[<replica>] `."""

    lines: list[str]
