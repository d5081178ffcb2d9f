"""Every Kubernetes object of a Clipper cluster as a plain dict; names, labels and selectors defined once.

Pure functions, no API calls: KubernetesContainerManager creates what they return and `clipper kubernetes
render` prints it, so the manifests a user reviews are the ones that run. Processes bind to their pod IP
(downward API), reach each other by Service name, and read secrets from the cluster's Secret mounted
read-only at /run/secrets/clipper, each role seeing only the keys it needs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from clipper import __version__
from clipper.admin.managers.base import (
    CLIPPER_DOCKER_LABEL,
    CLIPPER_INTERNAL_MANAGEMENT_PORT,
    CLIPPER_INTERNAL_QUERY_PORT,
    CLIPPER_INTERNAL_REDIS_PORT,
    CLIPPER_INTERNAL_RPC_PORT,
    CLIPPER_NAME_LABEL,
    input_shape_env,
)
from clipper.admin.managers.secrets import (
    AUTH_TOKEN,
    QUERY_TOKEN,
    REDIS_CONFIG,
    REDIS_PASSWORD,
    RPC_TOKEN,
    redis_config_text,
)
from clipper.config.redis_server import redis_command
from clipper.errors import ClusterError
from clipper.schema import check_dns_label
from clipper.settings import SECRETS_DIR_VARIABLE
from clipper.types import InputType

Manifest = dict[str, Any]

# What clipper.admin.images.runtime_image() builds; spelled here so rendering needs no Docker SDK.
DEFAULT_IMAGE = f"clipper/clipper:{__version__}"
SECRETS_MOUNT = "/run/secrets/clipper"
READY_FILE = "/tmp/clipper-ready"  # the runtime writes it once its model is loaded
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
# Clipper 0.4's `service_types` keys; `metric` is only accepted: the query Service serves /metrics.
SERVICE_KEYS = ("redis", "management", "query", "query-rpc", "metric")
DEFAULT_SERVICE_TYPES = {
    "redis": "ClusterIP",  # only pods talk to Redis; exposing it on every node would be a hole
    "management": "NodePort",
    "query": "NodePort",
    "query-rpc": "ClusterIP",  # model containers run inside the cluster
    "metric": "NodePort",
}
ROLES = ("redis", "management", "query", "model")
ROLE_LABELS = {  # values of Clipper's `ai.clipper.name` label, as the Docker manager writes them
    "redis": "redis",
    "management": "management_frontend",
    "query": "query_frontend",
    "model": "model",
}
COMPONENTS = {
    "redis": "redis",
    "management": "management-frontend",
    "query": "query-frontend",
    "model": "model",
}
MODEL_NAME_LABEL = "ai.clipper.model.name"
MODEL_VERSION_LABEL = "ai.clipper.model.version"
SPEC_ANNOTATION = "ai.clipper/cluster-spec"  # on the management Deployment: what connect() rebuilds from
INPUT_TYPE_ANNOTATION = "ai.clipper/input-type"
INPUT_SHAPE_ANNOTATION = "ai.clipper/input-shape"  # CLIPPER_INPUT_SHAPE's value; absent: unshaped
IMAGE_ANNOTATION = "ai.clipper/model-image"
REPLICAS_ANNOTATION = (
    "ai.clipper/replicas"  # on the Secret: replica counts kept by stop_all for the next start
)
PRESTOP_SLEEP_S = 5  # endpoints drop a terminating pod before it stops accepting
DRAIN_TIMEOUT_MS = 10_000  # the query frontend's drain (CLIPPER_DRAIN_TIMEOUT_MS)
FRONTEND_GRACE_S = PRESTOP_SLEEP_S + DRAIN_TIMEOUT_MS // 1000 + 15
# Requests and limits per role; `resources={"model": {"limits": {"memory": "4Gi"}}}` overrides one entry.
DEFAULT_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "redis": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    "management": {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    },
    "query": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
    "model": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
}
MAX_CLUSTER_NAME = 63 - len("-query-rpc")  # the longest object name must stay a DNS label


def invalid(e: ValidationError, what: str) -> ClusterError:
    """One ClusterError naming each bad field of `what` and its problem."""
    problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
    return ClusterError(f"Invalid {what}: {problems}")


class ClusterSpec(BaseModel):
    """What decides a cluster's objects; stored on the management Deployment so connect() needs no file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Cluster name: prefix of every object name, value of the cluster label.")
    namespace: str = "default"
    image: str = Field(
        default=DEFAULT_IMAGE, min_length=1, description="Runtime image of every Clipper role."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    service_types: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SERVICE_TYPES))
    num_frontends: int = Field(default=1, ge=1)
    redis_host: str | None = Field(default=None, description="An external Redis; None runs our own.")
    redis_port: int = Field(default=CLIPPER_INTERNAL_REDIS_PORT, ge=1, le=65535)
    ephemeral_redis: bool = False
    storage_class: str | None = None
    redis_storage: str = "1Gi"
    resources: dict[str, dict[str, dict[str, str]]] = Field(default_factory=dict)
    cache_size_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    admin_auth: bool = True
    rpc_auth: bool = True
    query_auth: bool = False
    redis_password: bool = Field(default=True, description="Whether the Secret holds a Redis password.")

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        check_dns_label("name", value)
        if not value[0].isalpha():
            raise ValueError(f"{value!r} must start with a letter (Service names are DNS-1035 labels)")
        return value

    @field_validator("name")
    @classmethod
    def _short_enough(cls, value: str) -> str:
        if len(value) > MAX_CLUSTER_NAME:
            raise ValueError(f"at most {MAX_CLUSTER_NAME} characters, so '<name>-query-rpc' is a DNS label")
        return value

    @field_validator("service_types")
    @classmethod
    def _service_types(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(SERVICE_KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; the keys are {list(SERVICE_KEYS)}")
        for key, kind in value.items():
            if kind not in SERVICE_TYPES:
                raise ValueError(f"{key}={kind!r} is not one of {list(SERVICE_TYPES)}")
        return {**DEFAULT_SERVICE_TYPES, **value}

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, dict[str, dict[str, str]]]) -> dict[str, dict[str, dict[str, str]]]:
        for role, kinds in value.items():
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}; the roles are {list(ROLES)}")
            for kind, amounts in kinds.items():
                if kind not in ("requests", "limits"):
                    raise ValueError(f"{role}.{kind}: only 'requests' and 'limits' can be set")
                for resource in amounts:
                    if resource not in ("cpu", "memory", "ephemeral-storage"):
                        raise ValueError(f"{role}.{kind}.{resource}: not cpu, memory or ephemeral-storage")
        return value

    @classmethod
    def build(cls, **fields: Any) -> ClusterSpec:
        """Validate `fields`; a bad one raises a ClusterError naming it before anything is created."""
        try:
            return cls(**fields)
        except ValidationError as e:
            raise invalid(e, "Kubernetes cluster settings") from None

    @property
    def redis_url(self) -> str:
        """Where every Clipper process finds Redis: the external one, or our Service by its short name."""
        if self.redis_host is not None:
            return f"redis://{self.redis_host}:{self.redis_port}"
        return f"redis://{self.names.redis}:{CLIPPER_INTERNAL_REDIS_PORT}"

    @property
    def names(self) -> Names:
        return Names(self.name)

    def secret_keys(self) -> list[str]:
        """The keys the cluster's Secret holds under these auth switches."""
        wanted = {AUTH_TOKEN: self.admin_auth, RPC_TOKEN: self.rpc_auth, QUERY_TOKEN: self.query_auth}
        keys = [k for k, on in wanted.items() if on]
        if self.redis_password:
            keys.append(REDIS_PASSWORD)
            if self.redis_host is None:
                keys.append(REDIS_CONFIG)
        return keys

    def resources_of(self, role: str) -> dict[str, dict[str, str]]:
        """The role's defaults with the user's entries laid over them."""
        given = self.resources.get(role, {})
        return {kind: {**amounts, **given.get(kind, {})} for kind, amounts in DEFAULT_RESOURCES[role].items()}


class ModelSpec(BaseModel):
    """One model version's Deployment: which image serves it, with what input type, in how many replicas."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    input_type: str = "doubles"
    image: str = Field(min_length=1)
    replicas: int = Field(default=1, ge=0)
    input_shape: list[int] | None = None

    @field_validator("name", "version")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        return check_dns_label("model name or version", value)

    @field_validator("input_type")
    @classmethod
    def _input_type(cls, value: str) -> str:
        InputType.parse_env(value)
        return value

    @classmethod
    def build(cls, **fields: Any) -> ModelSpec:
        try:
            return cls(**fields)
        except ValidationError as e:
            raise invalid(e, "model") from None


class Names:
    """Object names of one cluster: `<cluster>-<role>`; model names are shortened with a hash past 63."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.redis = f"{cluster}-redis"
        self.management = f"{cluster}-mgmt"
        self.query = f"{cluster}-query"
        self.query_rpc = f"{cluster}-query-rpc"
        self.secret = f"{cluster}-secrets"
        self.service_account = f"{cluster}-clipper"
        self.management_account = f"{cluster}-clipper-mgmt"  # the one identity with API rights (its Role)

    def model(self, name: str, version: str) -> str:
        """`<cluster>-model-<name>-<version>`, plus a hash of the pair when a hyphen makes the split ambiguous
        (`a`/`1-2` and `a-1`/`2`) or the name passes 63 characters."""
        full = f"{self.cluster}-model-{name}-{version}"
        if "-" not in name + version and len(full) <= 63:
            return full
        digest = hashlib.sha256(f"{name}/{version}".encode()).hexdigest()[:8]
        return f"{full[:54].rstrip('-')}-{digest}"


def selector(cluster: str, role: str, model: tuple[str, str] | None = None) -> dict[str, str]:
    """Labels picking one role of one cluster (and one model version): Deployment selectors, list filters."""
    found = {CLIPPER_DOCKER_LABEL: cluster, CLIPPER_NAME_LABEL: ROLE_LABELS[role]}
    if model is not None:
        found |= {MODEL_NAME_LABEL: model[0], MODEL_VERSION_LABEL: model[1]}
    return found


def cluster_selector(cluster: str) -> str:
    """Label selector string for every object of one cluster."""
    return f"{CLIPPER_DOCKER_LABEL}={cluster}"


def labels(cluster: str, role: str, model: tuple[str, str] | None = None) -> dict[str, str]:
    """Every object's labels: the selector plus the recommended `app.kubernetes.io/*` ones."""
    return {
        "app.kubernetes.io/name": "clipper",
        "app.kubernetes.io/instance": cluster,
        "app.kubernetes.io/component": COMPONENTS[role],
        "app.kubernetes.io/part-of": "clipper",
        "app.kubernetes.io/managed-by": "clipper",
        "app.kubernetes.io/version": __version__,
        **selector(cluster, role, model),
    }


def _meta(spec: ClusterSpec, name: str, role: str, model: tuple[str, str] | None = None) -> Manifest:
    return {"name": name, "namespace": spec.namespace, "labels": labels(spec.name, role, model)}


def _env(values: dict[str, str]) -> list[Manifest]:
    return [{"name": k, "value": v} for k, v in values.items()]


POD_IP = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
POD_NAME = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def _secret_volume(spec: ClusterSpec, keys: list[str]) -> Manifest:
    return {
        "name": "clipper-secrets",
        "secret": {
            "secretName": spec.names.secret,
            "defaultMode": 0o400,
            "items": [{"key": k, "path": k} for k in keys],
        },
    }


def _secret_mount() -> Manifest:
    return {"name": "clipper-secrets", "mountPath": SECRETS_MOUNT, "readOnly": True}


def _container(spec: ClusterSpec, name: str, role: str, command: list[str], env: list[Manifest]) -> Manifest:
    return {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": command,
        "env": env,
        "resources": spec.resources_of(role),
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def _pod_spec(spec: ClusterSpec, containers: list[Manifest], volumes: list[Manifest]) -> Manifest:
    pod: Manifest = {
        "serviceAccountName": spec.names.service_account,
        "automountServiceAccountToken": False,  # only the management frontend calls the API (its own)
        "enableServiceLinks": False,  # a Service named `clipper` would otherwise set CLIPPER_PORT
        "containers": containers,
    }
    if volumes:
        pod["volumes"] = volumes
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in spec.image_pull_secrets]
    return pod


def _with_secrets(
    spec: ClusterSpec, container: Manifest, keys: list[str], env: bool = True
) -> list[Manifest]:
    """Mount the Secret's `keys` that exist into `container` (`env`: and point CLIPPER_SECRETS_DIR there);
    return the pod's volumes."""
    present = [k for k in keys if k in spec.secret_keys()]
    if not present:
        return []
    if env:
        container["env"].append({"name": SECRETS_DIR_VARIABLE, "value": SECRETS_MOUNT})
    container["volumeMounts"] = [*container.get("volumeMounts", []), _secret_mount()]
    return [_secret_volume(spec, present)]


def _deployment(
    spec: ClusterSpec, name: str, role: str, replicas: int, pod: Manifest, **extra: Any
) -> Manifest:
    model = extra.pop("model", None)
    template_meta: Manifest = {"labels": labels(spec.name, role, model)}
    if "pod_annotations" in extra:
        template_meta["annotations"] = extra.pop("pod_annotations")
    meta = _meta(spec, name, role, model)
    if "annotations" in extra:
        meta["annotations"] = extra.pop("annotations")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(spec.name, role, model)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": template_meta, "spec": pod},
            **extra,
        },
    }


def _service(spec: ClusterSpec, name: str, role: str, kind: str, port: int, port_name: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, name, role),
        "spec": {
            "type": kind,
            "selector": selector(spec.name, role),
            "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
        },
    }


def _http_probe(path: str, port: int, period_s: int, failures: int) -> Manifest:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period_s, "failureThreshold": failures}


def namespace(spec: ClusterSpec) -> Manifest:
    """The namespace, created only with `create_namespace_if_not_exists` (or `render --create-namespace`)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": spec.namespace}}


def service_account(spec: ClusterSpec) -> Manifest:
    """The pods' identity; it gets no RBAC and no token: no Clipper process calls the API."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(spec, spec.names.service_account, "management"),
        "automountServiceAccountToken": False,
    }


def management_access(spec: ClusterSpec) -> list[Manifest]:
    """The management frontend's own ServiceAccount, and a Role in the cluster's namespace letting it scale
    Deployments and read pods and their logs (set_num_replicas, get_replicas, get_model_logs). Patching a
    Deployment can change its image, so whoever holds the management pod can run code in the namespace."""
    meta = _meta(spec, spec.names.management_account, "management")
    rules = [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]
    rbac = "rbac.authorization.k8s.io"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta,
            "automountServiceAccountToken": False,
        },
        {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": spec.names.management_account},
            "subjects": [
                {"kind": "ServiceAccount", "name": spec.names.management_account, "namespace": spec.namespace}
            ],
        },
    ]


def secret_values(
    spec: ClusterSpec, existing: dict[str, str] | None = None, redis_password: str | None = None
) -> dict[str, str]:
    """The Secret's contents for `spec`: `existing` tokens kept, missing ones generated, a given Redis
    password used, switched-off ones left out."""
    old = existing or {}
    values = {k: old.get(k) or secrets.token_urlsafe(32) for k in spec.secret_keys() if k != REDIS_CONFIG}
    if redis_password is not None and REDIS_PASSWORD in values:
        values[REDIS_PASSWORD] = redis_password
    if REDIS_CONFIG in spec.secret_keys():
        values[REDIS_CONFIG] = redis_config_text(values[REDIS_PASSWORD])
    return values


def secret(spec: ClusterSpec, values: dict[str, str]) -> Manifest:
    """The cluster's tokens and Redis password (`values`, keyed by file name); mounted, never in env."""
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(spec, spec.names.secret, "management"),
        "data": data,
    }


def redis_objects(spec: ClusterSpec) -> list[Manifest]:
    """Service and StatefulSet of our Redis: AOF on a PersistentVolumeClaim (an emptyDir when ephemeral)."""
    names = spec.names
    config = Path(SECRETS_MOUNT) / REDIS_CONFIG if REDIS_CONFIG in spec.secret_keys() else None
    command = redis_command("redis-server", CLIPPER_INTERNAL_REDIS_PORT, Path("/data"), "$(POD_IP)", config)
    container = _container(spec, "redis", "redis", command, [POD_IP])
    container["ports"] = [{"name": "redis", "containerPort": CLIPPER_INTERNAL_REDIS_PORT}]
    container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    tcp = {"tcpSocket": {"port": CLIPPER_INTERNAL_REDIS_PORT}}
    container["readinessProbe"] = {**tcp, "periodSeconds": 2, "failureThreshold": 3}
    container["livenessProbe"] = {**tcp, "periodSeconds": 10, "failureThreshold": 6}
    volumes = _with_secrets(spec, container, [REDIS_CONFIG], env=False)  # redis-server reads it by path
    set_spec: Manifest = {
        "replicas": 1,
        "serviceName": names.redis,
        "selector": {"matchLabels": selector(spec.name, "redis")},
        "template": {"metadata": {"labels": labels(spec.name, "redis")}, "spec": {}},
    }
    if spec.ephemeral_redis:
        volumes.append({"name": "data", "emptyDir": {}})
    else:
        claim: Manifest = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": spec.redis_storage}},
        }
        if spec.storage_class is not None:
            claim["storageClassName"] = spec.storage_class
        set_spec["volumeClaimTemplates"] = [
            {"metadata": {"name": "data", "labels": labels(spec.name, "redis")}, "spec": claim}
        ]
    set_spec["template"]["spec"] = _pod_spec(spec, [container], volumes)
    stateful = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(spec, names.redis, "redis"),
        "spec": set_spec,
    }
    kind = spec.service_types["redis"]
    return [_service(spec, names.redis, "redis", kind, CLIPPER_INTERNAL_REDIS_PORT, "redis"), stateful]


def management_objects(spec: ClusterSpec) -> list[Manifest]:
    """Deployment (1 replica) and Service of the management frontend; the spec rides on its annotation."""
    names = spec.names
    env = [POD_IP, *_env({
        "CLIPPER_HTTP_HOST": "$(POD_IP)",
        "CLIPPER_MANAGEMENT_PORT": str(CLIPPER_INTERNAL_MANAGEMENT_PORT),
        "CLIPPER_REDIS_URL": spec.redis_url,
        "CLIPPER_REPLICA_CONTROL": "kubernetes",  # through its ServiceAccount's Role (management_access)
        "CLIPPER_CLUSTER_NAME": spec.name,
        "CLIPPER_NAMESPACE": spec.namespace,
    })]  # fmt: skip
    container = _container(
        spec, "management-frontend", "management", ["python", "-m", "clipper.frontends.management"], env
    )
    container["ports"] = [{"name": "http", "containerPort": CLIPPER_INTERNAL_MANAGEMENT_PORT}]
    container["readinessProbe"] = _http_probe("/admin/ping", CLIPPER_INTERNAL_MANAGEMENT_PORT, 2, 3)
    container["livenessProbe"] = _http_probe("/admin/ping", CLIPPER_INTERNAL_MANAGEMENT_PORT, 10, 6)
    volumes = _with_secrets(spec, container, [AUTH_TOKEN, REDIS_PASSWORD])
    annotations = {SPEC_ANNOTATION: spec.model_dump_json()}
    pod = _pod_spec(spec, [container], volumes)
    pod["serviceAccountName"] = names.management_account
    pod["automountServiceAccountToken"] = True  # the in-cluster client of replica_control.py
    deployment = _deployment(spec, names.management, "management", 1, pod, annotations=annotations)
    kind = spec.service_types["management"]
    return [
        deployment,
        _service(spec, names.management, "management", kind, CLIPPER_INTERNAL_MANAGEMENT_PORT, "http"),
    ]


def query_objects(spec: ClusterSpec) -> list[Manifest]:
    """ONE Deployment of N query frontends, its HTTP Service and the RPC Service model containers dial first.

    Each frontend advertises `$(POD_IP):7000` in the frontend registry, so containers reach every pod.
    """
    names = spec.names
    env = [POD_IP, POD_NAME, *_env({
        "CLIPPER_HTTP_HOST": "$(POD_IP)",
        "CLIPPER_HTTP_PORT": str(CLIPPER_INTERNAL_QUERY_PORT),
        "CLIPPER_RPC_HOST": "$(POD_IP)",
        "CLIPPER_RPC_PORT": str(CLIPPER_INTERNAL_RPC_PORT),
        "CLIPPER_FRONTEND_ID": "$(POD_NAME)",
        "CLIPPER_REDIS_URL": spec.redis_url,
        "CLIPPER_CACHE_SIZE_BYTES": str(spec.cache_size_bytes),
        "CLIPPER_DRAIN_TIMEOUT_MS": str(DRAIN_TIMEOUT_MS),
    })]  # fmt: skip
    container = _container(spec, "query-frontend", "query", ["python", "-m", "clipper.frontends.query"], env)
    container["ports"] = [
        {"name": "http", "containerPort": CLIPPER_INTERNAL_QUERY_PORT},
        {"name": "rpc", "containerPort": CLIPPER_INTERNAL_RPC_PORT},
    ]
    container["readinessProbe"] = _http_probe("/health", CLIPPER_INTERNAL_QUERY_PORT, 2, 2)
    container["livenessProbe"] = _http_probe("/health", CLIPPER_INTERNAL_QUERY_PORT, 10, 6)
    container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SLEEP_S)]}}}
    volumes = _with_secrets(spec, container, [RPC_TOKEN, QUERY_TOKEN, REDIS_PASSWORD])
    pod = _pod_spec(spec, [container], volumes)
    pod["terminationGracePeriodSeconds"] = FRONTEND_GRACE_S
    scrape = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(CLIPPER_INTERNAL_QUERY_PORT),
        "prometheus.io/path": "/metrics",
    }
    deployment = _deployment(spec, names.query, "query", spec.num_frontends, pod, pod_annotations=scrape)
    types = spec.service_types
    return [
        deployment,
        _service(spec, names.query, "query", types["query"], CLIPPER_INTERNAL_QUERY_PORT, "http"),
        _service(spec, names.query_rpc, "query", types["query-rpc"], CLIPPER_INTERNAL_RPC_PORT, "rpc"),
    ]


# Ready = model loaded and a TCP connection established to some frontend's RPC port (/proc/net/tcp lists
# the remote port in hex, then the state: 01 is ESTABLISHED).
CONNECTED = (
    f"test -f {READY_FILE} && grep -qs ':{CLIPPER_INTERNAL_RPC_PORT:04X} 01 ' /proc/net/tcp /proc/net/tcp6"
)


def model_deployment(spec: ClusterSpec, model: ModelSpec) -> Manifest:
    """`replicas` pods of one model version, each dialling the RPC Service once, then every frontend pod."""
    key = (model.name, model.version)
    env = _env({
        "CLIPPER_MODEL_NAME": model.name,
        "CLIPPER_MODEL_VERSION": model.version,
        "CLIPPER_INPUT_TYPE": model.input_type,
        **input_shape_env(model.input_shape),
        "CLIPPER_IP": spec.names.query_rpc,
        "CLIPPER_PORT": str(CLIPPER_INTERNAL_RPC_PORT),
        "CLIPPER_READY_FILE": READY_FILE,
    })  # fmt: skip
    spec_for_image = spec.model_copy(update={"image": model.image})
    container = _container(spec_for_image, "model", "model", ["python", "-m", "clipper.runtime"], env)
    container["readinessProbe"] = {"exec": {"command": ["sh", "-c", CONNECTED]}, "periodSeconds": 2}
    container["livenessProbe"] = {
        "exec": {"command": ["test", "-f", READY_FILE]},
        "initialDelaySeconds": 60,  # loading a model may take a while; a failed load exits by itself
        "periodSeconds": 20,
    }
    volumes = _with_secrets(spec, container, [RPC_TOKEN])  # model code is the user's: the RPC token only
    annotations = {INPUT_TYPE_ANNOTATION: model.input_type, IMAGE_ANNOTATION: model.image}
    if model.input_shape is not None:  # so connect() and a restart give new pods the same shape
        annotations[INPUT_SHAPE_ANNOTATION] = input_shape_env(model.input_shape)["CLIPPER_INPUT_SHAPE"]
    pod = _pod_spec(spec, [container], volumes)
    return _deployment(
        spec,
        spec.names.model(model.name, model.version),
        "model",
        model.replicas,
        pod,
        model=key,
        annotations=annotations,
    )


def cluster_objects(
    spec: ClusterSpec,
    secret_values: dict[str, str] | None,
    models: Sequence[ModelSpec] = (),
    create_namespace: bool = False,
) -> list[Manifest]:
    """Every object of the cluster in creation order; no Secret when `secret_values` is None."""
    found: list[Manifest] = [namespace(spec)] if create_namespace else []
    found.append(service_account(spec))
    found += management_access(spec)
    if secret_values is not None:
        found.append(secret(spec, secret_values))
    if spec.redis_host is None:
        found += redis_objects(spec)
    found += management_objects(spec)
    found += query_objects(spec)
    found += [model_deployment(spec, m) for m in models]
    return found


def spec_from_annotations(annotations: dict[str, str] | None) -> ClusterSpec:
    """The ClusterSpec stored on a management Deployment."""
    text = (annotations or {}).get(SPEC_ANNOTATION)
    if text is None:
        raise ClusterError(
            f"The management Deployment has no {SPEC_ANNOTATION} annotation; not made by clipper?"
        )
    try:
        return ClusterSpec.model_validate(json.loads(text))
    except (ValueError, ValidationError) as e:
        raise ClusterError(f"Unreadable {SPEC_ANNOTATION} annotation: {e}") from None


def render(objects: Sequence[Manifest]) -> str:
    """Objects as one multi-document YAML stream, as `kubectl apply -f -` reads it."""
    import yaml  # type: ignore[import-untyped]  # PyYAML comes with the kubernetes client

    return "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in objects)
