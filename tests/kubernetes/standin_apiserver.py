"""A stand-in Kubernetes API server with a controller and a Docker-backed kubelet, for tests only.

No real API server can run on these machines, so this fake speaks enough of the Kubernetes REST API for the
official `kubernetes` client (through a real kubeconfig) to manage a Clipper cluster: namespaces, pods,
services, secrets, config maps, service accounts, PVCs, nodes, events (core/v1); deployments, replica sets,
stateful sets (apps/v1); roles and role bindings (rbac/v1). Its controller turns Deployments and
StatefulSets into pods as the real controllers do (names, owner references, rolling updates); its kubelet
runs each pod's containers with Docker on the host network, each pod on its own loopback address
(127.10.x.y), and Services are userspace TCP proxies on 127.20.x.y (plus 127.0.0.1:nodePort).

What the stand-in does differently, on purpose: it never pulls images (absent -> ErrImagePull /
ImagePullBackOff, whatever the pull policy); time is compressed (probe periods and delays capped at
`max_probe_period_s`, crash back-off from 0.5 s to 5 s); Service names resolve through /etc/hosts entries
given at container start, so a pod sees only the Services that existed when it (re)started.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import http.client
import itertools
import json
import logging
import math
import os
import random
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import docker
import docker.errors
from docker.models.containers import Container

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
STANDIN_LABEL = "ai.clipper.standin"  # on every Docker container the stand-in starts: its instance id
STANDIN_PID_LABEL = "ai.clipper.standin.pid"  # the process that started it, to sweep leftovers of dead runs
NODE_NAME = "standin-node"
TOKEN = "standin-token"
NODE_PORT_RANGE = (30000, 32767)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class Kind:
    """One resource type: its URL plural, kind, API group and version, and whether it lives in a namespace."""

    plural: str
    kind: str
    group: str
    version: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """The name Kubernetes uses in messages: `deployments.apps`, `pods`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RBAC = "rbac.authorization.k8s.io"
KINDS = {
    k.plural: k
    for k in (
        Kind("namespaces", "Namespace", "", "v1", namespaced=False),
        Kind("nodes", "Node", "", "v1", namespaced=False),
        Kind("pods", "Pod", "", "v1"),
        Kind("services", "Service", "", "v1"),
        Kind("secrets", "Secret", "", "v1"),
        Kind("configmaps", "ConfigMap", "", "v1"),
        Kind("serviceaccounts", "ServiceAccount", "", "v1"),
        Kind("persistentvolumeclaims", "PersistentVolumeClaim", "", "v1"),
        Kind("events", "Event", "", "v1"),
        Kind("endpoints", "Endpoints", "", "v1"),
        Kind("deployments", "Deployment", "apps", "v1"),
        Kind("replicasets", "ReplicaSet", "apps", "v1"),
        Kind("statefulsets", "StatefulSet", "apps", "v1"),
        Kind("roles", "Role", RBAC, "v1"),
        Kind("rolebindings", "RoleBinding", RBAC, "v1"),
    )
}
# Kinds whose names must be DNS-1035 labels (services) or DNS-1123 labels; the rest are subdomains.
NAME_RULES: dict[str, re.Pattern[str]] = {"services": DNS_1035, "namespaces": DNS_LABEL}


def now_iso(later_s: float = 0.0) -> str:
    """A Kubernetes timestamp (RFC 3339, whole seconds, UTC), `later_s` from now."""
    moment = datetime.now(tz=UTC) + timedelta(seconds=later_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """A failure answered as a Kubernetes `Status` body with its HTTP code and reason."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def body(self) -> Obj:
        status: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{kind.qualified} "{name}" not found',
        {"name": name, "group": kind.group, "kind": kind.plural},
    )


def invalid(kind: Kind, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 Invalid naming each field and its problem, as the API server words it."""
    text = ", ".join(f"{f}: {m}" for f, m in causes)
    label = f"{kind.kind}.{kind.group}" if kind.group else kind.kind
    return ApiError(
        422,
        "Invalid",
        f'{label} "{name}" is invalid: {text}',
        {
            "name": name,
            "group": kind.group,
            "kind": kind.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
        },
    )


# ----- label selectors -----

SelectorTerm = Callable[[dict[str, str]], bool]


def parse_selector(text: str) -> list[SelectorTerm]:
    """Equality- and set-based label selector terms (`a=b,c!=d,e in (x,y),f notin (z),g,!h`)."""
    terms: list[SelectorTerm] = []
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    for raw in (p.strip() for p in parts):
        if not raw:
            continue
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", raw):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                terms.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                terms.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)", raw):
            key, op, value = m.group(1), m.group(2), m.group(3)
            if op == "!=":
                terms.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                terms.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif m := re.fullmatch(r"(!?)\s*([\w./-]+)", raw):
            negate, key = m.group(1) == "!", m.group(2)
            terms.append(lambda labels, k=key, n=negate: (k in labels) != n)
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {raw!r}")
    return terms


def selector_from_spec(selector: Obj | None) -> list[SelectorTerm]:
    """Terms of a `LabelSelector` object (matchLabels and matchExpressions)."""
    if not selector:
        return []
    terms: list[SelectorTerm] = [
        lambda labels, k=k, v=v: labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()
    ]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
        checks: dict[str, SelectorTerm] = {
            "In": lambda labels, k=key, vs=values: labels.get(k) in vs,
            "NotIn": lambda labels, k=key, vs=values: labels.get(k) not in vs,
            "Exists": lambda labels, k=key: k in labels,
            "DoesNotExist": lambda labels, k=key: k not in labels,
        }
        terms.append(checks[op])
    return terms


def matches(terms: list[SelectorTerm], labels: dict[str, str] | None) -> bool:
    return all(term(labels or {}) for term in terms)


def field_matches(obj: Obj, selector: str) -> bool:
    """Equality field selectors on dotted paths (`metadata.name=x`, `status.phase!=Running`)."""
    for raw in filter(None, (p.strip() for p in selector.split(","))):
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", raw)
        if m is None:
            raise ApiError(400, "BadRequest", f"invalid field selector: {raw!r}")
        value: Any = obj
        for part in m.group(1).split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if (str(value if value is not None else "") == m.group(3)) == (m.group(2) == "!="):
            return False
    return True


# ----- patches -----

MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "volumeClaimTemplates": None,
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, key: str = "") -> Any:
    """Strategic merge patch for the lists the stand-in knows merge keys of (containers, env, ports, ...)."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: v for k, v in patch.items() if k != "$patch"}
        result = dict(target) if isinstance(target, dict) else {}
        for k, v in patch.items():
            if v is None:
                result.pop(k, None)
            else:
                result[k] = strategic_merge_patch(result.get(k), v, k)
        return result
    if isinstance(patch, list) and isinstance(target, list):
        merge_key = MERGE_KEYS.get(key)
        if key == "ports" and patch and isinstance(patch[0], dict):
            merge_key = "containerPort" if "containerPort" in patch[0] else "port"
        if merge_key is None:
            return copy.deepcopy(patch)
        result_list = [copy.deepcopy(x) for x in target]
        for item in patch:
            index = next(
                (i for i, x in enumerate(result_list) if x.get(merge_key) == item.get(merge_key)), None
            )
            if item.get("$patch") == "delete":
                if index is not None:
                    result_list.pop(index)
            elif index is None:
                result_list.append(copy.deepcopy(item))
            else:
                result_list[index] = strategic_merge_patch(result_list[index], item)
        return result_list
    return copy.deepcopy(patch)


def json_patch(target: Obj, ops: Any) -> Obj:
    """RFC 6902 JSON patch (add, remove, replace, test, move, copy)."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json patch body must be a list of operations")
    doc: Any = copy.deepcopy(target)

    def walk(path: str) -> tuple[Any, str]:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    for op in ops:
        try:
            kind, path = op["op"], op["path"]
            if kind in ("move", "copy"):
                parent, last = walk(op["from"])
                value = parent[int(last)] if isinstance(parent, list) else parent[last]
                if kind == "move":
                    del parent[int(last) if isinstance(parent, list) else last]
                op = {"op": "add", "path": path, "value": copy.deepcopy(value)}
                kind = "add"
            parent, last = walk(path)
            if kind == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
                if current != op["value"]:
                    raise ApiError(422, "Invalid", f"test operation failed at {path}")
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind == "add" and isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            elif kind in ("add", "replace"):
                if isinstance(parent, list):
                    parent[int(last)] = op["value"]
                else:
                    if kind == "replace" and last not in parent:
                        raise KeyError(last)
                    parent[last] = op["value"]
            else:
                raise ApiError(400, "BadRequest", f"unknown json patch operation {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise ApiError(422, "Invalid", f"json patch {op!r} does not apply: {e!r}") from e
    if not isinstance(doc, dict):
        raise ApiError(422, "Invalid", "json patch must leave an object")
    return doc


# ----- validation -----


def validate(kind: Kind, obj: Obj) -> None:
    """The checks a real API server makes that the stand-in repeats: names, labels, selectors, types."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    causes: list[tuple[str, str]] = []
    rule = NAME_RULES.get(kind.plural, DNS_LABEL)
    limit = 63 if kind.plural in NAME_RULES else 253
    if kind.plural not in NAME_RULES:
        ok = all(DNS_LABEL.match(p) for p in name.split(".")) and len(name) <= limit
    else:
        ok = bool(rule.match(name)) and len(name) <= limit
    if not ok:
        causes.append(("metadata.name", f"Invalid value: {name!r}: must be a lowercase RFC 1123 name"))
    for where in ("metadata.labels", "spec.template.metadata.labels"):
        labels = obj
        for part in where.split("."):
            labels = labels.get(part) or {} if isinstance(labels, dict) else {}
        for key, value in labels.items():
            causes += label_problems(where, key, value)
    for key in (meta.get("annotations") or {}).keys():
        causes += [(f, m) for f, m in label_problems("metadata.annotations", key, "") if "value" not in m]
    spec = obj.get("spec") or {}
    if kind.plural in ("deployments", "statefulsets", "replicasets"):
        selector = selector_from_spec(spec.get("selector"))
        template_labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
        if not spec.get("selector"):
            causes.append(("spec.selector", "Required value"))
        elif not matches(selector, template_labels):
            causes.append(
                (
                    "spec.template.metadata.labels",
                    "Invalid value: `selector` does not match template `labels`",
                )
            )
        if not (spec.get("template") or {}).get("spec", {}).get("containers"):
            causes.append(("spec.template.spec.containers", "Required value"))
        if int(spec.get("replicas", 1)) < 0:
            causes.append(("spec.replicas", "Invalid value: must be greater than or equal to 0"))
    if kind.plural == "services":
        service_type = spec.get("type", "ClusterIP")
        if service_type not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            causes.append(("spec.type", f'Unsupported value: "{service_type}"'))
        ports = spec.get("ports") or []
        if not ports and service_type != "ExternalName":
            causes.append(("spec.ports", "Required value"))
        for i, port in enumerate(ports):
            if len(ports) > 1 and not port.get("name"):
                causes.append((f"spec.ports[{i}].name", "Required value"))
            if port.get("nodePort") and service_type == "ClusterIP":
                causes.append(
                    (f"spec.ports[{i}].nodePort", "Forbidden: may not be used when `type` is 'ClusterIP'")
                )
    if kind.plural == "secrets":
        for key, value in (obj.get("data") or {}).items():
            if not SECRET_KEY.match(key):
                causes.append(
                    (f"data[{key}]", "Invalid value: a valid config key must consist of alphanumerics")
                )
            try:
                base64.b64decode(value, validate=True)
            except (ValueError, TypeError):
                causes.append((f"data[{key}]", "Invalid value: illegal base64 data"))
    if kind.plural == "pods" or kind.plural in ("deployments", "statefulsets", "replicasets"):
        pod_spec = spec if kind.plural == "pods" else (spec.get("template") or {}).get("spec") or {}
        prefix = "spec" if kind.plural == "pods" else "spec.template.spec"
        volumes = {v.get("name") for v in pod_spec.get("volumes") or []}
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or []}
        for i, c in enumerate(pod_spec.get("containers") or []):
            if not c.get("image"):
                causes.append((f"{prefix}.containers[{i}].image", "Required value"))
            for j, mount in enumerate(c.get("volumeMounts") or []):
                if mount.get("name") not in volumes | claims:
                    causes.append(
                        (
                            f"{prefix}.containers[{i}].volumeMounts[{j}].name",
                            f'Not found: "{mount.get("name")}"',
                        )
                    )
    if causes:
        raise invalid(kind, name, causes)


def label_problems(where: str, key: str, value: Any) -> list[tuple[str, str]]:
    problems = []
    prefix, _, name = key.rpartition("/")
    if not LABEL_NAME.match(name) or len(name) > 63 or (prefix and len(prefix) > 253):
        problems.append((where, f"Invalid value: {key!r}: name part must be a qualified name"))
    if not isinstance(value, str):
        problems.append((where, f"Invalid value: {value!r}: label value must be a string"))
    elif value and (len(value) > 63 or not LABEL_NAME.match(value)):
        problems.append(
            (where, f"Invalid value: {value!r}: a valid label value must be 63 characters or less")
        )
    return problems


# ----- the store -----


@dataclass
class WatchEvent:
    rv: int
    type: str
    plural: str
    namespace: str
    obj: Obj


class Store:
    """Every object, keyed by (plural, namespace, name), with resource versions and a bounded event log."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.rv = 1
        self.events: list[WatchEvent] = []

    def _record(self, event_type: str, plural: str, namespace: str, obj: Obj) -> None:
        self.events.append(WatchEvent(self.rv, event_type, plural, namespace, copy.deepcopy(obj)))
        del self.events[:-5000]
        self.changed.notify_all()

    def _bump(self, obj: Obj) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def require(self, plural: str, namespace: str, name: str) -> Obj:
        obj = self.get(plural, namespace, name)
        if obj is None:
            raise not_found(KINDS[plural], name)
        return obj

    def list(
        self, plural: str, namespace: str | None = None, terms: list[SelectorTerm] | None = None
    ) -> list[Obj]:
        with self.lock:
            found = [
                copy.deepcopy(obj)
                for (p, ns, _), obj in self.objects.items()
                if p == plural
                and (namespace is None or ns == namespace)
                and matches(terms or [], obj["metadata"].get("labels"))
            ]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def create(self, plural: str, namespace: str, obj: Obj) -> Obj:
        """Add a new object with uid, resourceVersion, generation and creationTimestamp set."""
        kind = KINDS[plural]
        with self.lock:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(random.choices(HASH_ALPHABET, k=5))
            name = meta.get("name", "")
            if kind.namespaced:
                ns_obj = self.objects.get(("namespaces", "", namespace))
                if ns_obj is None:
                    raise not_found(KINDS["namespaces"], namespace)
                if ns_obj.get("status", {}).get("phase") == "Terminating":
                    raise ApiError(
                        403,
                        "Forbidden",
                        f'{kind.qualified} "{name}" is forbidden: unable to create new content in namespace '
                        f"{namespace} because it is being terminated",
                    )
                meta["namespace"] = namespace
            validate(kind, obj)
            key = (plural, namespace if kind.namespaced else "", name)
            if key in self.objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{kind.qualified} "{name}" already exists',
                    {"name": name, "group": kind.group, "kind": plural},
                )
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_iso(), generation=1)
            for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(transient, None)
            obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
            self._bump(obj)
            self.objects[key] = obj
            self._record("ADDED", plural, key[1], obj)
            return copy.deepcopy(obj)

    def update(self, plural: str, namespace: str, obj: Obj, *, status_only: bool = False) -> Obj:
        """Replace an object: 409 Conflict on a stale resourceVersion; status kept unless `status_only`;
        generation bumped when the spec changed."""
        kind = KINDS[plural]
        name = obj.get("metadata", {}).get("name", "")
        with self.lock:
            key = (plural, namespace if kind.namespaced else "", name)
            current = self.objects.get(key)
            if current is None:
                raise not_found(kind, name)
            wanted_rv = obj.get("metadata", {}).get("resourceVersion")
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.qualified} "{name}": '
                    "the object has been modified; please apply your changes to the latest version "
                    "and try again",
                    {"name": name, "group": kind.group, "kind": plural},
                )
            if status_only:
                new = copy.deepcopy(current)
                new["status"] = copy.deepcopy(obj.get("status") or {})
            else:
                new = copy.deepcopy(obj)
                validate(kind, new)
                for immutable in ("uid", "creationTimestamp", "namespace", "deletionTimestamp", "generation"):
                    if immutable in current["metadata"]:
                        new["metadata"][immutable] = current["metadata"][immutable]
                    else:
                        new["metadata"].pop(immutable, None)
                if "status" in current:
                    new["status"] = current["status"]
                new["kind"], new["apiVersion"] = kind.kind, kind.api_version
                immutable_problem = self._immutable_problem(plural, current, new)
                if immutable_problem:
                    raise invalid(kind, name, [immutable_problem])
                if new.get("spec") != current.get("spec") or new.get("data") != current.get("data"):
                    new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if new == current:
                return copy.deepcopy(
                    current
                )  # a no-op write keeps its resourceVersion, as the API server does
            self._bump(new)
            self.objects[key] = new
            self._record("MODIFIED", plural, key[1], new)
            return copy.deepcopy(new)

    @staticmethod
    def _immutable_problem(plural: str, current: Obj, new: Obj) -> tuple[str, str] | None:
        if plural in ("deployments", "statefulsets", "replicasets"):
            if current["spec"].get("selector") != new["spec"].get("selector"):
                return ("spec.selector", "Invalid value: field is immutable")
        if plural == "services":
            new["spec"].setdefault("clusterIP", current["spec"].get("clusterIP"))
            new["spec"].setdefault("clusterIPs", current["spec"].get("clusterIPs"))
            if new["spec"]["clusterIP"] != current["spec"].get("clusterIP"):
                return ("spec.clusterIP", "Invalid value: field is immutable")
        return None

    def mutate(
        self, plural: str, namespace: str, name: str, change: Callable[[Obj], None], uid: str | None = None
    ) -> Obj | None:
        """Apply `change` to the stored object in place (controller writes); None if it is gone (or, with
        `uid`, replaced by another object of the same name)."""
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            if obj is None or uid not in (None, obj["metadata"]["uid"]):
                return None
            before = copy.deepcopy(obj)
            change(obj)
            if obj != before:
                self._bump(obj)
                self._record("MODIFIED", plural, namespace, obj)
            return copy.deepcopy(obj)

    def remove(self, plural: str, namespace: str, name: str, uid: str | None = None) -> Obj | None:
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            if obj is not None and uid in (None, obj["metadata"]["uid"]):
                del self.objects[(plural, namespace, name)]
                self.rv += 1
                self._record("DELETED", plural, namespace, obj)
                return obj
            return None

    def uids(self) -> set[str]:
        with self.lock:
            return {o["metadata"]["uid"] for o in self.objects.values()}


# ----- defaults applied on create -----


def apply_defaults(
    plural: str, obj: Obj, allocate_ip: Callable[[], str], allocate_node_port: Callable[[], int]
) -> None:
    """The defaults the real API server fills in that clients read back (replicas, clusterIP, nodePort...)."""
    with_spec = ("deployments", "statefulsets", "services", "pods", "persistentvolumeclaims")
    spec = obj.setdefault("spec", {}) if plural in with_spec else {}
    if plural == "deployments":
        spec.setdefault("replicas", 1)
        spec.setdefault(
            "strategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        )
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    if plural == "statefulsets":
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if plural == "services":
        spec.setdefault("type", "ClusterIP")
        if spec["type"] != "ExternalName" and spec.get("clusterIP") != "None":
            spec["clusterIP"] = spec.get("clusterIP") or allocate_ip()
            spec["clusterIPs"] = [spec["clusterIP"]]
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port["port"])
            if spec["type"] in ("NodePort", "LoadBalancer") and not port.get("nodePort"):
                port["nodePort"] = allocate_node_port()
        spec.setdefault("sessionAffinity", "None")
        obj["status"] = {"loadBalancer": {}}
        if spec["type"] == "LoadBalancer":
            obj["status"] = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
    if plural == "secrets":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        obj["data"] = {
            **(obj.get("data") or {}),
            **{k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()},
        }
    if plural == "persistentvolumeclaims":
        obj["status"] = {"phase": "Bound", "accessModes": spec.get("accessModes") or ["ReadWriteOnce"]}
    if plural == "namespaces":
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    if plural == "pods":
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("serviceAccountName", "default")
        for c in spec.get("containers") or []:
            image = c.get("image", "")
            tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
            c.setdefault("imagePullPolicy", "IfNotPresent" if tagged else "Always")
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def short_hash(value: Any, length: int = 10) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()
    return "".join(HASH_ALPHABET[b % len(HASH_ALPHABET)] for b in digest[:length])


def pod_ready(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def owner_ref(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: known variables replaced, `$$` escapes, unknown references kept."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and (end := value.find(")", i)) != -1:
            name = value[i + 2 : end]
            out.append(env.get(name, value[i : end + 1]))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def service_link_env(services: list[Obj]) -> dict[str, str]:
    """The Docker-link-style variables Kubernetes puts in every pod for each Service of its namespace."""
    env: dict[str, str] = {}
    for svc in services:
        ip = svc["spec"].get("clusterIP")
        ports = svc["spec"].get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        env[f"{prefix}_PORT"] = f"tcp://{ip}:{ports[0]['port']}"
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
            base = f"{prefix}_PORT_{port['port']}_TCP"
            env.update(
                {
                    base: f"tcp://{ip}:{port['port']}",
                    f"{base}_PROTO": "tcp",
                    f"{base}_PORT": str(port["port"]),
                    f"{base}_ADDR": ip,
                }
            )
    return env


# ----- the kubelet: one thread per pod -----


@dataclass
class Probe:
    """One container probe with the kubelet's counters."""

    spec: Obj
    next_at: float
    successes: int = 0
    failures: int = 0


@dataclass
class ContainerRun:
    """What the kubelet tracks for one container of a pod."""

    spec: Obj
    current: Container | None = None
    previous: Container | None = None
    restarts: int = 0
    ready: bool = False
    started_at: str | None = None
    retry_at: float = 0.0
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    last_terminated: Obj | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None
    pull_failures: int = 0


class PodWorker:
    """Runs one pod's containers with Docker, probes them, restarts them, and stops them on deletion."""

    def __init__(self, server: StandinApiServer, namespace: str, name: str, uid: str) -> None:
        self.server = server
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.stop_now = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"standin-pod-{name}", daemon=True)
        self.runs: list[ContainerRun] = []
        self.ip = ""
        self.volume_dir = server.root / "pods" / f"{namespace}-{name}-{uuid.uuid4().hex[:6]}"

    def start(self) -> None:
        self.thread.start()

    def _pod(self) -> Obj | None:
        pod = self.server.store.get("pods", self.namespace, self.name)
        return pod if pod is not None and pod["metadata"]["uid"] == self.uid else None

    def _run(self) -> None:
        try:
            pod = self._pod()
            if pod is None:
                return
            self.ip = self.server.allocate_pod_ip()
            self.runs = [ContainerRun(spec=c) for c in pod["spec"]["containers"]]
            self._write_status(pod, started=now_iso())
            mounts = None
            while not self.stop_now.is_set():
                pod = self._pod()
                if pod is None:
                    break
                if pod["metadata"].get("deletionTimestamp"):
                    self._terminate(pod)
                    break
                if mounts is None:
                    mounts = self._prepare_volumes(pod)
                if mounts is not None:
                    for run in self.runs:
                        self._tend(pod, run, mounts)
                self._write_status(pod)
                self.stop_now.wait(self.server.tick_s)
        except Exception:
            logger.exception("stand-in kubelet failed on pod %s/%s", self.namespace, self.name)
        finally:
            self._cleanup()

    # --- volumes ---

    def _prepare_volumes(self, pod: Obj) -> dict[str, Path] | None:
        """Host directories for the pod's volumes; None (retried) while a Secret or claim is missing."""
        paths: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            if "secret" in volume or "configMap" in volume:
                source = volume.get("secret") or volume.get("configMap") or {}
                plural = "secrets" if "secret" in volume else "configmaps"
                ref = source.get("secretName") or source.get("name", "")
                obj = self.server.store.get(plural, self.namespace, ref)
                if obj is None:
                    if source.get("optional"):
                        obj = {"data": {}}
                    else:
                        self._set_waiting("ContainerCreating", f'{plural[:-1]} "{ref}" not found')
                        return None
                data = {
                    k: base64.b64decode(v) if plural == "secrets" else str(v).encode()
                    for k, v in (obj.get("data") or {}).items()
                }
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                target = self.volume_dir / name
                target.mkdir(parents=True, exist_ok=True)
                for item in items:
                    if item["key"] not in data:
                        self._set_waiting(
                            "ContainerCreating", f'key "{item["key"]}" not in {plural[:-1]} {ref}'
                        )
                        return None
                    path = target / item["path"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data[item["key"]])
                    os.chmod(path, item.get("mode", source.get("defaultMode", 0o644)))
                paths[name] = target
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if self.server.store.get("persistentvolumeclaims", self.namespace, claim) is None:
                    self._set_waiting("ContainerCreating", f'persistentvolumeclaim "{claim}" not found')
                    return None
                paths[name] = self.server.claim_dir(self.namespace, claim)
            elif "emptyDir" in volume:
                paths[name] = self.volume_dir / name
                paths[name].mkdir(parents=True, exist_ok=True)
                os.chmod(paths[name], 0o777)
            else:
                self._set_waiting(
                    "ContainerCreating",
                    f"volume {name}: the stand-in supports secret, "
                    "configMap, persistentVolumeClaim and emptyDir only",
                )
                return None
        return paths

    def _set_waiting(self, reason: str, message: str) -> None:
        for run in self.runs:
            run.waiting = (reason, message)

    # --- containers ---

    def _environment(self, pod: Obj, spec: Obj) -> dict[str, str]:
        env: dict[str, str] = {"HOSTNAME": self.name}
        if pod["spec"].get("enableServiceLinks", True):
            env.update(service_link_env(self.server.store.list("services", self.namespace)))
        for entry in spec.get("env") or []:
            if "value" in entry or "valueFrom" not in entry:
                env[entry["name"]] = expand(str(entry.get("value", "")), env)
                continue
            source = entry["valueFrom"]
            if "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                fields = {
                    "status.podIP": self.ip,
                    "status.hostIP": "127.0.0.1",
                    "metadata.name": self.name,
                    "metadata.namespace": self.namespace,
                    "metadata.uid": pod["metadata"]["uid"],
                    "spec.nodeName": NODE_NAME,
                    "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
                }
                if path not in fields:
                    raise ValueError(f"env {entry['name']}: fieldRef {path} is not supported by the stand-in")
                env[entry["name"]] = fields[path]
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                ref = source.get("secretKeyRef") or source["configMapKeyRef"]
                plural = "secrets" if "secretKeyRef" in source else "configmaps"
                obj = self.server.store.get(plural, self.namespace, ref["name"]) or {}
                value = (obj.get("data") or {}).get(ref["key"])
                if value is not None:
                    env[entry["name"]] = base64.b64decode(value).decode() if plural == "secrets" else value
        return env

    def _tend(self, pod: Obj, run: ContainerRun, mounts: dict[str, Path]) -> None:
        """Start, watch, probe and restart one container."""
        now = time.monotonic()
        if run.current is not None:
            try:
                run.current.reload()
                state = run.current.attrs["State"]
            except docker.errors.NotFound:
                state = {"Status": "exited", "ExitCode": 137}
            if state["Status"] in ("exited", "dead"):
                self._container_exited(pod, run, int(state.get("ExitCode", 1)))
                return
            self._probe(pod, run, now)
            return
        if now < run.retry_at or (run.waiting and run.waiting[0] == "Terminated"):
            return
        image = run.spec["image"]
        if not self.server.image_present(image):
            run.pull_failures += 1
            run.waiting = (
                ("ErrImagePull", f'stand-in pulls nothing: image "{image}" is not present on this engine')
                if run.pull_failures % 2 == 1
                else ("ImagePullBackOff", f'Back-off pulling image "{image}"')
            )
            run.retry_at = now + min(5.0, 0.5 * run.pull_failures)
            return
        self._start_container(pod, run, mounts)

    def _start_container(self, pod: Obj, run: ContainerRun, mounts: dict[str, Path]) -> None:
        spec = run.spec
        env = self._environment(pod, spec)
        volumes: dict[str, dict[str, str]] = {}
        for mount in spec.get("volumeMounts") or []:
            host = mounts[mount["name"]] / mount.get("subPath", "")
            read_only = mount.get("readOnly", False) or any(
                v["name"] == mount["name"] and ("secret" in v or "configMap" in v)
                for v in pod["spec"].get("volumes") or []
            )
            volumes[str(host)] = {"bind": mount["mountPath"], "mode": "ro" if read_only else "rw"}
        command = [expand(str(x), env) for x in spec.get("command") or []]
        args = [expand(str(x), env) for x in spec.get("args") or []]
        security = spec.get("securityContext") or {}
        kwargs: dict[str, Any] = {}
        if security.get("runAsUser") is not None:
            kwargs["user"] = str(security["runAsUser"])
        try:
            container = self.server.docker.containers.run(
                spec["image"],
                command=args or ([] if command else None),
                entrypoint=command or None,
                environment=env,
                network_mode="host",
                extra_hosts=self.server.service_hosts(self.namespace),
                volumes=volumes,
                working_dir=spec.get("workingDir"),
                labels={STANDIN_LABEL: self.server.instance, STANDIN_PID_LABEL: str(os.getpid())},
                name=f"standin-{self.server.instance}-{self.name}-{spec['name']}-{run.restarts}",
                detach=True,
                **kwargs,
            )
        except docker.errors.APIError as e:
            run.waiting = ("CreateContainerError", str(e))
            run.retry_at = time.monotonic() + 2
            return
        run.current = container
        run.waiting = None
        run.ready = False
        run.started_at = now_iso()
        delay_cap = self.server.max_probe_period_s
        for attr, key in (("readiness", "readinessProbe"), ("liveness", "livenessProbe")):
            probe_spec = spec.get(key)
            first = (
                time.monotonic() + min(float(probe_spec.get("initialDelaySeconds", 0)), delay_cap)
                if probe_spec
                else 0
            )
            setattr(run, attr, Probe(probe_spec, first) if probe_spec else None)
        if run.readiness is None:
            run.ready = True

    def _container_exited(self, pod: Obj, run: ContainerRun, exit_code: int) -> None:
        run.last_terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": run.started_at,
            "finishedAt": now_iso(),
        }
        run.ready = False
        if pod["spec"].get("restartPolicy", "Always") == "Never" or (
            pod["spec"].get("restartPolicy") == "OnFailure" and exit_code == 0
        ):
            run.waiting = ("Terminated", "")
            return
        run.restarts += 1
        backoff = min(5.0, 0.5 * 2 ** (run.restarts - 1))
        run.waiting = (
            "CrashLoopBackOff",
            f"back-off {backoff:g}s restarting failed container={run.spec['name']} pod={self.name}",
        )
        run.retry_at = time.monotonic() + backoff
        if run.previous is not None:
            self.server.remove_container(run.previous)
        run.previous, run.current = run.current, None

    def _probe(self, pod: Obj, run: ContainerRun, now: float) -> None:
        for probe, is_readiness in ((run.readiness, True), (run.liveness, False)):
            if probe is None or now < probe.next_at:
                continue
            spec = probe.spec
            probe.next_at = now + min(float(spec.get("periodSeconds", 10)), self.server.max_probe_period_s)
            ok = self._check(run, spec)
            probe.successes, probe.failures = (probe.successes + 1, 0) if ok else (0, probe.failures + 1)
            if is_readiness:
                if ok and probe.successes >= int(spec.get("successThreshold", 1)):
                    run.ready = True
                elif not ok and probe.failures >= int(spec.get("failureThreshold", 3)):
                    run.ready = False
            elif not ok and probe.failures >= int(spec.get("failureThreshold", 3)):
                logger.info("stand-in: liveness failed for %s/%s, restarting", self.name, run.spec["name"])
                container = run.current
                if container is not None:
                    grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
                    self.server.stop_container(container, min(grace, 5))
                    self._container_exited(pod, run, 137)
                return

    def _check(self, run: ContainerRun, spec: Obj) -> bool:
        """One httpGet, tcpSocket or exec probe against this pod's IP or container."""
        timeout = float(spec.get("timeoutSeconds", 1))
        try:
            if "httpGet" in spec:
                get = spec["httpGet"]
                port = self.server.resolve_port(run.spec, get["port"])
                conn = http.client.HTTPConnection(get.get("host") or self.ip, port, timeout=timeout)
                try:
                    headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                    conn.request("GET", get.get("path", "/"), headers=headers)
                    return 200 <= conn.getresponse().status < 400
                finally:
                    conn.close()
            if "tcpSocket" in spec:
                port = self.server.resolve_port(run.spec, spec["tcpSocket"]["port"])
                with socket.create_connection(
                    (spec["tcpSocket"].get("host") or self.ip, port), timeout=timeout
                ):
                    return True
            if "exec" in spec and run.current is not None:
                return self.server.exec_in(run.current, spec["exec"]["command"], timeout) == 0
        except (OSError, http.client.HTTPException, docker.errors.APIError):
            return False
        return False

    # --- status ---

    def _write_status(self, pod: Obj, started: str | None = None) -> None:
        statuses = []
        for run in self.runs:
            state: Obj
            if run.current is not None:
                state = {"running": {"startedAt": run.started_at}}
            elif run.waiting and run.waiting[0] == "Terminated" and run.last_terminated:
                state = {"terminated": run.last_terminated}
            else:
                reason, message = run.waiting or ("ContainerCreating", "")
                state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
            status: Obj = {
                "name": run.spec["name"],
                "image": run.spec["image"],
                "imageID": "",
                "ready": run.ready and run.current is not None,
                "restartCount": run.restarts,
                "started": run.current is not None,
                "state": state,
                "lastState": {"terminated": run.last_terminated} if run.last_terminated else {},
            }
            if run.current is not None:
                status["containerID"] = f"docker://{run.current.id}"
            statuses.append(status)
        all_ready = bool(self.runs) and all(s["ready"] for s in statuses)
        any_running = any(s["started"] for s in statuses)
        terminated = [r for r in self.runs if r.waiting and r.waiting[0] == "Terminated"]
        if terminated and len(terminated) == len(self.runs):
            codes = [r.last_terminated["exitCode"] for r in terminated if r.last_terminated]
            phase = "Succeeded" if not any(codes) else "Failed"
        else:
            phase = "Running" if any_running or any(r.restarts for r in self.runs) else "Pending"

        def change(obj: Obj) -> None:
            st = obj.setdefault("status", {})
            previous = {c["type"]: c for c in st.get("conditions") or []}

            def condition(kind: str, ok: bool) -> Obj:
                value = "True" if ok else "False"
                old = previous.get(kind)
                moment = old["lastTransitionTime"] if old and old["status"] == value else now_iso()
                return {"type": kind, "status": value, "lastTransitionTime": moment}

            st.update(
                phase=phase,
                hostIP="127.0.0.1",
                podIP=self.ip,
                podIPs=[{"ip": self.ip}],
                containerStatuses=statuses,
                conditions=[
                    condition("PodScheduled", True),
                    condition("Initialized", True),
                    condition("ContainersReady", all_ready),
                    condition("Ready", all_ready),
                ],
            )
            if started:
                st["startTime"] = started
            obj["spec"]["nodeName"] = NODE_NAME

        self.server.store.mutate("pods", self.namespace, self.name, change, self.uid)

    # --- termination ---

    def _terminate(self, pod: Obj) -> None:
        """preStop, then SIGTERM with the rest of the grace period, then the pod object goes."""
        grace = float(pod["metadata"].get("deletionGracePeriodSeconds", 30))
        deadline = time.monotonic() + grace
        for run in self.runs:
            run.ready = False
        self._write_status(pod)
        for run in self.runs:
            pre_stop = (run.spec.get("lifecycle") or {}).get("preStop")
            if run.current is None or not pre_stop or grace <= 0:
                continue
            remaining = max(0.0, deadline - time.monotonic())
            if "exec" in pre_stop:
                self.server.exec_in(run.current, pre_stop["exec"]["command"], remaining)
            elif "sleep" in pre_stop:
                self.stop_now.wait(min(remaining, float(pre_stop["sleep"]["seconds"])))
            elif "httpGet" in pre_stop:
                self._check(run, {"httpGet": pre_stop["httpGet"], "timeoutSeconds": remaining})
        for run in self.runs:
            if run.current is not None:
                self.server.stop_container(run.current, max(0.0, deadline - time.monotonic()))
        self.server.store.remove("pods", self.namespace, self.name, self.uid)

    def _cleanup(self) -> None:
        for run in self.runs:
            for container in (run.current, run.previous):
                if container is not None:
                    self.server.remove_container(container)
        shutil.rmtree(self.volume_dir, ignore_errors=True)

    def logs(self, container: str | None, previous: bool, tail: int | None, timestamps: bool) -> str:
        """The container's log (its last run, or the one before with `previous`), as the kubelet serves it."""
        runs = [r for r in self.runs if container in (None, r.spec["name"])]
        if not runs:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {self.name}")
        if container is None and len(self.runs) > 1:
            raise ApiError(
                400,
                "BadRequest",
                f"a container name must be specified for pod {self.name}, choose one of: "
                f"{[r.spec['name'] for r in self.runs]}",
            )
        run = runs[0]
        source = run.previous if previous else (run.current or run.previous)
        if source is None:
            if previous:
                raise ApiError(
                    400,
                    "BadRequest",
                    f'previous terminated container "{run.spec["name"]}" in pod "{self.name}" not found',
                )
            reason = run.waiting[0] if run.waiting else "ContainerCreating"
            raise ApiError(
                400,
                "BadRequest",
                f'container "{run.spec["name"]}" in pod "{self.name}" is waiting to start: {reason}',
            )
        kwargs: dict[str, Any] = {"timestamps": timestamps}
        if tail is not None:
            kwargs["tail"] = tail
        try:
            return bytes(source.logs(**kwargs)).decode(errors="replace")
        except docker.errors.NotFound:
            return ""


# ----- Services: userspace proxies -----


class ServiceProxies:
    """TCP listeners on each Service's clusterIP:port (and 127.0.0.1:nodePort) forwarding to ready pods."""

    def __init__(self, endpoints: Callable[[str, str, int], list[tuple[str, int]]]) -> None:
        self.endpoints = endpoints
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="standin-proxies", daemon=True)
        self.listeners: dict[tuple[str, int], tuple[asyncio.Server, tuple[str, str, int]]] = {}
        self.turn: dict[tuple[str, str, int], Iterator[int]] = {}
        self.failures: dict[tuple[str, int], str] = {}
        self.connections: set[asyncio.Task[None]] = set()  # held, so an idle connection is not collected

    def start(self) -> None:
        self.thread.start()

    def sync(self, wanted: dict[tuple[str, int], tuple[str, str, int]]) -> None:
        """Open and close listeners so that exactly `wanted` (address -> (namespace, service, port)) exist."""
        future = asyncio.run_coroutine_threadsafe(self._sync(wanted), self.loop)
        future.result(timeout=10)

    async def _sync(self, wanted: dict[tuple[str, int], tuple[str, str, int]]) -> None:
        for address in [a for a, (_, target) in self.listeners.items() if wanted.get(a) != target]:
            server, _ = self.listeners.pop(address)
            server.close()
        for address, target in wanted.items():
            if address in self.listeners or address in self.failures:
                continue
            try:
                server = await asyncio.start_server(
                    lambda r, w, t=target: self._forward(r, w, t), address[0], address[1], reuse_address=True
                )
            except OSError as e:
                self.failures[address] = str(e)
                logger.warning("stand-in: cannot listen on %s:%d for %s: %s", *address, target, e)
                continue
            self.listeners[address] = (server, target)

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: tuple[str, str, int]
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
            task.add_done_callback(self.connections.discard)
        endpoints = self.endpoints(*target)
        counter = self.turn.setdefault(target, itertools.count())
        start = next(counter)
        upstream = None
        for i in range(len(endpoints)):
            host, port = endpoints[(start + i) % len(endpoints)]
            try:
                upstream = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=2)
                break
            except (TimeoutError, OSError):
                continue
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
                if dst.can_write_eof():
                    dst.write_eof()
            except (OSError, RuntimeError):
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
        except asyncio.CancelledError:
            pass  # the stand-in is stopping: the connection just closes
        finally:
            writer.close()
            up_writer.close()

    def stop(self) -> None:
        async def close_all() -> None:
            for server, _ in self.listeners.values():
                server.close()
            self.listeners.clear()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        self.loop.close()


# ----- the server -----


class StandinApiServer:
    """The stand-in: HTTP API, controllers, kubelet and Service proxies; `start()` then `stop()`.

    With `docker_client=None` there is no kubelet: pods stay Pending, as on a cluster with no nodes.
    """

    def __init__(
        self,
        root: Path,
        docker_client: docker.DockerClient | None = None,
        *,
        max_probe_period_s: float = 1.0,
        tick_s: float = 0.25,
    ) -> None:
        self.root = root
        self.docker = docker_client
        self.max_probe_period_s = max_probe_period_s
        self.tick_s = tick_s
        self.instance = uuid.uuid4().hex[:8]
        self.store = Store()
        self.workers: dict[str, PodWorker] = {}  # by pod uid: a StatefulSet's new pod reuses the name
        self.pod_ips = itertools.count(2)
        self.service_ips = itertools.count(2)
        self.used_node_ports: set[int] = set()
        self.images: dict[str, bool] = {}
        self.proxies = ServiceProxies(self._endpoints)
        self.stopping = threading.Event()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.http.daemon_threads = True
        self.threads = [
            threading.Thread(target=self.http.serve_forever, name="standin-http", daemon=True),
            threading.Thread(target=self._control_loop, name="standin-controller", daemon=True),
        ]
        for ns in ("default", "kube-system"):
            self.create("namespaces", "", {"metadata": {"name": ns}})
        self.store.create(
            "nodes",
            "",
            {
                "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "ExternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": NODE_NAME},
                    ],
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            },
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.docker is not None:
            sweep_leftovers(self.docker)
        self.proxies.start()
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Stop everything: pods' containers (no grace), proxies, the HTTP server; remove the temp files."""
        self.stopping.set()
        with self.store.changed:
            self.store.changed.notify_all()
        for worker in list(self.workers.values()):
            worker.stop_now.set()
        self._remove_own_containers()  # also ends any docker stop a worker is waiting in
        for worker in list(self.workers.values()):
            worker.thread.join(timeout=20)
        self.http.shutdown()
        self.http.server_close()
        for thread in self.threads[1:]:
            thread.join(timeout=10)
        self.proxies.stop()
        self._remove_own_containers()
        shutil.rmtree(self.root, ignore_errors=True)

    def _remove_own_containers(self) -> None:
        if self.docker is not None:
            for container in self.docker.containers.list(
                all=True, filters={"label": f"{STANDIN_LABEL}={self.instance}"}
            ):
                self.remove_container(container)

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig whose current context points at this stand-in (namespace `default`), bearer token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": TOKEN}}],
            "contexts": [
                {
                    "name": "standin",
                    "context": {"cluster": "standin", "user": "standin", "namespace": "default"},
                }
            ],
            "current-context": "standin",
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    # --- allocation and Docker helpers ---

    def allocate_pod_ip(self) -> str:
        n = next(self.pod_ips)
        return f"127.10.{n // 250}.{n % 250 + 1}"

    def _allocate_service_ip(self) -> str:
        n = next(self.service_ips)
        return f"127.20.{n // 250}.{n % 250 + 1}"

    def _allocate_node_port(self) -> int:
        for port in range(*NODE_PORT_RANGE):
            if port in self.used_node_ports:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            self.used_node_ports.add(port)
            return port
        raise ApiError(500, "InternalError", "no free node port left in the stand-in's range")

    def claim_dir(self, namespace: str, claim: str) -> Path:
        path = self.root / "claims" / namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777)
        return path

    def image_present(self, image: str) -> bool:
        assert self.docker is not None
        try:
            self.docker.images.get(image)
            return True
        except docker.errors.ImageNotFound:
            return False

    def remove_container(self, container: Container) -> None:
        try:
            container.remove(force=True)
        except docker.errors.APIError:
            pass

    def stop_container(self, container: Container, timeout_s: float) -> None:
        try:
            container.stop(timeout=math.ceil(timeout_s))
        except docker.errors.APIError:
            pass

    def exec_in(self, container: Container, command: list[str], timeout_s: float) -> int | None:
        """Run `command` in the container; its exit code, or None when it outlives `timeout_s`."""
        assert self.docker is not None
        api = self.docker.api
        deadline = time.monotonic() + timeout_s
        try:
            exec_id = api.exec_create(container.id, command, stdout=False, stderr=False)["Id"]
            api.exec_start(exec_id, detach=True)
            while time.monotonic() < deadline:
                info = api.exec_inspect(exec_id)
                if not info["Running"]:
                    return int(info["ExitCode"])
                time.sleep(0.05)
        except docker.errors.APIError:
            return None
        return None

    @staticmethod
    def resolve_port(container: Obj, port: int | str) -> int:
        """A probe's or Service's target port: a number, or the name of one of the container's ports."""
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in container.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise OSError(f"container {container.get('name')} has no port named {port}")

    def service_hosts(self, namespace: str) -> dict[str, str]:
        """/etc/hosts entries for the Services a pod of `namespace` can resolve (short and full names)."""
        hosts = {}
        for svc in self.store.list("services"):
            ip = svc["spec"].get("clusterIP")
            if not ip or ip == "None":
                continue
            name, ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
            hosts[f"{name}.{ns}.svc.cluster.local"] = ip
            hosts[f"{name}.{ns}.svc"] = ip
            hosts[f"{name}.{ns}"] = ip
            if ns == namespace:
                hosts[name] = ip
        return hosts

    def _endpoints(self, namespace: str, service: str, port: int) -> list[tuple[str, int]]:
        """Ready pods behind a Service's port (`port` is the Service port number)."""
        svc = self.store.get("services", namespace, service)
        if svc is None or not svc["spec"].get("selector"):
            return []
        spec_port = next((p for p in svc["spec"]["ports"] if p["port"] == port), None)
        if spec_port is None:
            return []
        terms = selector_from_spec({"matchLabels": svc["spec"]["selector"]})
        found = []
        for pod in self.store.list("pods", namespace, terms):
            if not pod_ready(pod) or not pod.get("status", {}).get("podIP"):
                continue
            for container in pod["spec"]["containers"]:
                try:
                    target = self.resolve_port(container, spec_port["targetPort"])
                except OSError:
                    continue
                found.append((pod["status"]["podIP"], target))
                break
        return found

    # --- the API's operations ---

    def create(self, plural: str, namespace: str, obj: Obj) -> Obj:
        apply_defaults(plural, obj, self._allocate_service_ip, self._allocate_node_port)
        if plural == "services":
            for port in obj["spec"].get("ports") or []:
                if port.get("nodePort"):
                    self.used_node_ports.add(int(port["nodePort"]))
        created = self.store.create(plural, namespace, obj)
        if plural == "namespaces":
            self.store.create(
                "serviceaccounts", created["metadata"]["name"], {"metadata": {"name": "default"}}
            )
        self._wake()
        return created

    def replace(self, plural: str, namespace: str, obj: Obj, *, status_only: bool = False) -> Obj:
        """PUT (and PATCH's result): defaults as on create; a Service keeps its clusterIP and node ports."""
        if not status_only:
            current = self.store.get(plural, namespace, (obj.get("metadata") or {}).get("name", ""))
            if plural == "services" and current is not None:
                spec = obj.setdefault("spec", {})
                spec.setdefault("clusterIP", current["spec"].get("clusterIP"))
                old_ports = {p["port"]: p.get("nodePort") for p in current["spec"].get("ports") or []}
                for port in spec.get("ports") or []:
                    if old_ports.get(port.get("port")) and not port.get("nodePort"):
                        port["nodePort"] = old_ports[port["port"]]
            apply_defaults(plural, obj, self._allocate_service_ip, self._allocate_node_port)
        updated = self.store.update(plural, namespace, obj, status_only=status_only)
        self._wake()
        return updated

    def delete(self, plural: str, namespace: str, name: str, options: Obj) -> Obj:
        """Delete: pods end gracefully through their kubelet; everything else goes now, dependents by GC."""
        kind = KINDS[plural]
        obj = self.store.require(plural, namespace, name)
        propagation = options.get("propagationPolicy") or (
            "Orphan" if options.get("orphanDependents") else "Background"
        )
        worker = self.workers.get(obj["metadata"]["uid"])
        if plural == "pods" and worker is not None:
            grace = options.get("gracePeriodSeconds")
            if grace is None:
                grace = obj["spec"].get("terminationGracePeriodSeconds", 30)

            def mark(pod: Obj) -> None:
                meta = pod["metadata"]
                if "deletionTimestamp" not in meta or grace < meta["deletionGracePeriodSeconds"]:
                    meta["deletionTimestamp"] = now_iso(grace)
                    meta["deletionGracePeriodSeconds"] = int(grace)

            marked = self.store.mutate(plural, namespace, name, mark)
            if grace == 0:
                worker.stop_now.set()
                self.store.remove(plural, namespace, name)
            self._wake()
            return marked or obj
        if plural == "namespaces":
            marked = self.store.mutate(plural, "", name, lambda o: o["status"].update(phase="Terminating"))
            self._wake()
            return marked or obj
        if propagation == "Orphan":
            uid = obj["metadata"]["uid"]
            for other_plural in ("replicasets", "pods"):
                for dependent in self.store.list(other_plural, namespace):
                    if owned_by(dependent, uid):
                        self.store.mutate(
                            other_plural,
                            namespace,
                            dependent["metadata"]["name"],
                            lambda o, u=uid: o["metadata"].update(
                                ownerReferences=[r for r in o["metadata"]["ownerReferences"] if r["uid"] != u]
                            ),
                        )
        self.store.remove(plural, namespace if kind.namespaced else "", name)
        if plural == "persistentvolumeclaims":
            shutil.rmtree(self.root / "claims" / namespace / name, ignore_errors=True)
        if plural == "services":
            for port in obj["spec"].get("ports") or []:
                self.used_node_ports.discard(int(port.get("nodePort") or 0))
        self._wake()
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": kind.group, "kind": plural, "uid": obj["metadata"]["uid"]},
        }

    def pod_logs(self, namespace: str, name: str, query: dict[str, str]) -> str:
        pod = self.store.require("pods", namespace, name)
        worker = self.workers.get(pod["metadata"]["uid"])
        if worker is None:
            raise ApiError(400, "BadRequest", f'pod "{name}" is not running on a node yet')
        tail = int(query["tailLines"]) if "tailLines" in query else None
        return worker.logs(
            query.get("container"), query.get("previous") == "true", tail, query.get("timestamps") == "true"
        )

    def _wake(self) -> None:
        with self.store.changed:
            self.store.changed.notify_all()

    # --- the controllers ---

    def _control_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self._reconcile()
            except Exception:
                logger.exception("stand-in controller pass failed")
            with self.store.changed:
                self.store.changed.wait(self.tick_s)

    def _reconcile(self) -> None:
        self._collect_garbage()
        self._finish_namespaces()
        for dep in self.store.list("deployments"):
            self._reconcile_deployment(dep)
        for rs in self.store.list("replicasets"):
            self._reconcile_replicaset(rs)
        for sts in self.store.list("statefulsets"):
            self._reconcile_statefulset(sts)
        self._run_pods()
        self._sync_services()

    def _collect_garbage(self) -> None:
        uids = self.store.uids()
        for plural in ("replicasets", "pods", "persistentvolumeclaims", "secrets", "services", "configmaps"):
            for obj in self.store.list(plural):
                refs = obj["metadata"].get("ownerReferences") or []
                if refs and not any(r.get("uid") in uids for r in refs):
                    try:
                        self.delete(plural, obj["metadata"]["namespace"], obj["metadata"]["name"], {})
                    except ApiError:
                        pass

    def _finish_namespaces(self) -> None:
        for ns in self.store.list("namespaces"):
            if ns["status"].get("phase") != "Terminating":
                continue
            name = ns["metadata"]["name"]
            left = 0
            for kind in KINDS.values():
                if not kind.namespaced:
                    continue
                for obj in self.store.list(kind.plural, name):
                    left += 1
                    if not obj["metadata"].get("deletionTimestamp"):
                        try:
                            self.delete(kind.plural, name, obj["metadata"]["name"], {})
                        except ApiError:
                            pass
            if left == 0:
                self.store.remove("namespaces", "", name)

    def _reconcile_deployment(self, dep: Obj) -> None:
        ns, name, uid = dep["metadata"]["namespace"], dep["metadata"]["name"], dep["metadata"]["uid"]
        spec = dep["spec"]
        replicas = int(spec.get("replicas", 1))
        template_hash = short_hash(spec["template"])
        owned = [rs for rs in self.store.list("replicasets", ns) if owned_by(rs, uid)]
        new_rs = next(
            (rs for rs in owned if rs["metadata"]["labels"].get("pod-template-hash") == template_hash), None
        )
        old = [rs for rs in owned if rs is not new_rs]
        pods = [
            p for p in self.store.list("pods", ns) if any(owned_by(p, rs["metadata"]["uid"]) for rs in owned)
        ]
        recreate = spec.get("strategy", {}).get("type") == "Recreate"
        old_pods = [p for p in pods if new_rs is None or not owned_by(p, new_rs["metadata"]["uid"])]
        revision = 1 + max(
            (
                int(rs["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision", 0))
                for rs in owned
            ),
            default=0,
        )
        if new_rs is None:
            template = copy.deepcopy(spec["template"])
            template["metadata"].setdefault("labels", {})["pod-template-hash"] = template_hash
            selector = copy.deepcopy(spec["selector"])
            selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
            new_rs = self.create(
                "replicasets",
                ns,
                {
                    "metadata": {
                        "name": f"{name}-{template_hash}",
                        "labels": dict(template["metadata"]["labels"]),
                        "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                        "ownerReferences": [owner_ref(dep)],
                    },
                    "spec": {"replicas": 0, "selector": selector, "template": template},
                },
            )
        new_uid = new_rs["metadata"]["uid"]
        new_pods = [p for p in pods if owned_by(p, new_uid)]
        new_ready = sum(1 for p in new_pods if pod_ready(p))
        self._scale_rs(new_rs, 0 if recreate and old_pods else replicas)
        remaining = 0 if recreate else max(0, replicas - new_ready)
        for rs in sorted(old, key=lambda r: r["metadata"]["creationTimestamp"], reverse=True):
            keep = min(int(rs["spec"].get("replicas", 0)), remaining)
            remaining -= keep
            self._scale_rs(rs, keep)
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in active if pod_ready(p))
        updated = sum(1 for p in active if owned_by(p, new_uid))
        available = ready >= replicas

        def status(obj: Obj) -> None:
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": len(active),
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": ready,
                **({"unavailableReplicas": replicas - ready} if replicas > ready else {}),
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True" if available else "False",
                        "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                        "message": "Deployment has minimum availability."
                        if available
                        else "Deployment does not have minimum availability.",
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "reason": "NewReplicaSetAvailable"
                        if updated == replicas == ready
                        else "ReplicaSetUpdated",
                        "message": f'ReplicaSet "{new_rs["metadata"]["name"]}" is progressing.',
                    },
                ],
            }
            for key in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
                if obj["status"][key] == 0:
                    del obj["status"][key]  # the API server omits zero counts; clients read them as None

        self.store.mutate("deployments", ns, name, status)

    def _scale_rs(self, rs: Obj, replicas: int) -> None:
        if int(rs["spec"].get("replicas", 0)) != replicas:
            self.store.mutate(
                "replicasets",
                rs["metadata"]["namespace"],
                rs["metadata"]["name"],
                lambda o: o["spec"].update(replicas=replicas),
            )

    def _reconcile_replicaset(self, rs: Obj) -> None:
        ns, name, uid = rs["metadata"]["namespace"], rs["metadata"]["name"], rs["metadata"]["uid"]
        pods = [p for p in self.store.list("pods", ns) if owned_by(p, uid)]
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        wanted = int(rs["spec"].get("replicas", 0))
        for _ in range(wanted - len(active)):
            self._create_pod(rs, ns, f"{name}-{''.join(random.choices(HASH_ALPHABET, k=5))}", {})
        if len(active) > wanted:
            # not ready first, then the newest
            order = sorted(active, key=lambda p: (pod_ready(p), _neg_time(p)))
            for pod in order[: len(active) - wanted]:
                self.delete("pods", ns, pod["metadata"]["name"], {})
        ready = sum(1 for p in active if pod_ready(p))
        self.store.mutate(
            "replicasets",
            ns,
            name,
            lambda o: o.update(
                status={
                    "replicas": len(active),
                    "fullyLabeledReplicas": len(active),
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "observedGeneration": o["metadata"]["generation"],
                }
            ),
        )

    def _create_pod(
        self,
        owner: Obj,
        namespace: str,
        name: str,
        extra_labels: dict[str, str],
        volumes: list[Obj] | None = None,
    ) -> None:
        template = copy.deepcopy(owner["spec"]["template"])
        meta = template.get("metadata") or {}
        spec = template["spec"]
        if volumes:
            spec["volumes"] = [
                v for v in spec.get("volumes") or [] if v["name"] not in {x["name"] for x in volumes}
            ] + volumes
        pod = {
            "metadata": {
                "name": name,
                "labels": {**(meta.get("labels") or {}), **extra_labels},
                "annotations": meta.get("annotations") or {},
                "ownerReferences": [owner_ref(owner)],
            },
            "spec": spec,
        }
        try:
            self.create("pods", namespace, pod)
        except ApiError as e:
            logger.warning("stand-in controller could not create pod %s: %s", name, e.message)

    def _reconcile_statefulset(self, sts: Obj) -> None:
        ns, name, uid = sts["metadata"]["namespace"], sts["metadata"]["name"], sts["metadata"]["uid"]
        spec = sts["spec"]
        replicas = int(spec.get("replicas", 1))
        revision = f"{name}-{short_hash(spec['template'])}"
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        pods = {p["metadata"]["name"]: p for p in self.store.list("pods", ns) if owned_by(p, uid)}
        busy = any(p["metadata"].get("deletionTimestamp") or not pod_ready(p) for p in pods.values())
        for i in range(replicas):
            pod_name = f"{name}-{i}"
            if pod_name in pods:
                continue
            if ordered and busy:
                break
            volumes = []
            for claim in spec.get("volumeClaimTemplates") or []:
                claim_name = f"{claim['metadata']['name']}-{pod_name}"
                if self.store.get("persistentvolumeclaims", ns, claim_name) is None:
                    body = copy.deepcopy(claim)
                    body["metadata"] = {
                        "name": claim_name,
                        "labels": {
                            **(claim["metadata"].get("labels") or {}),
                            **(spec["selector"].get("matchLabels") or {}),
                        },
                    }
                    self.create("persistentvolumeclaims", ns, body)
                volumes.append(
                    {"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name}}
                )
            labels = {
                "statefulset.kubernetes.io/pod-name": pod_name,
                "controller-revision-hash": revision,
                "apps.kubernetes.io/pod-index": str(i),
            }
            self._create_pod(sts, ns, pod_name, labels, volumes)
            busy = True
        extra = sorted(
            (p for n, p in pods.items() if int(n.rsplit("-", 1)[1]) >= replicas),
            key=lambda p: -int(p["metadata"]["name"].rsplit("-", 1)[1]),
        )
        for pod in extra[:1] if ordered else extra:
            if not pod["metadata"].get("deletionTimestamp"):
                self.delete("pods", ns, pod["metadata"]["name"], {})
        stale = sorted(
            (
                p
                for p in pods.values()
                if p["metadata"]["labels"].get("controller-revision-hash") != revision
                and not p["metadata"].get("deletionTimestamp")
            ),
            key=lambda p: -int(p["metadata"]["name"].rsplit("-", 1)[1]),
        )
        if stale and not extra and all(pod_ready(p) for p in pods.values()):
            self.delete("pods", ns, stale[0]["metadata"]["name"], {})
        active = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in active if pod_ready(p))
        updated = sum(
            1 for p in active if p["metadata"]["labels"].get("controller-revision-hash") == revision
        )

        def status(obj: Obj) -> None:
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": len(active),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "currentReplicas": updated,
                "updatedReplicas": updated,
                "currentRevision": revision,
                "updateRevision": revision,
            }

        self.store.mutate("statefulsets", ns, name, status)

    def _run_pods(self) -> None:
        if self.docker is None:
            return
        live = set()
        for pod in self.store.list("pods"):
            uid = pod["metadata"]["uid"]
            live.add(uid)
            if uid not in self.workers and not self.stopping.is_set():
                worker = PodWorker(self, pod["metadata"]["namespace"], pod["metadata"]["name"], uid)
                self.workers[uid] = worker
                worker.start()
        for uid, worker in list(self.workers.items()):
            if not worker.thread.is_alive() and uid not in live:
                del self.workers[uid]

    def _sync_services(self) -> None:
        wanted: dict[tuple[str, int], tuple[str, str, int]] = {}
        for svc in self.store.list("services"):
            ns, name, spec = svc["metadata"]["namespace"], svc["metadata"]["name"], svc["spec"]
            for port in spec.get("ports") or []:
                target = (ns, name, int(port["port"]))
                if spec.get("clusterIP") and spec["clusterIP"] != "None":
                    wanted[(spec["clusterIP"], int(port["port"]))] = target
                if port.get("nodePort"):
                    wanted[("127.0.0.1", int(port["nodePort"]))] = target
        self.proxies.sync(wanted)

    # --- HTTP ---

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(ApiHandler):
            standin = server

        return Handler


def _neg_time(pod: Obj) -> float:
    stamp = datetime.strptime(pod["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    return -stamp.replace(tzinfo=UTC).timestamp()


def sweep_leftovers(client: docker.DockerClient) -> None:
    """Remove containers of stand-ins whose process is gone (a run killed before its teardown)."""
    for container in client.containers.list(all=True, filters={"label": STANDIN_LABEL}):
        pid = int(container.labels.get(STANDIN_PID_LABEL, "0") or 0)
        if pid and pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass


@dataclass
class Route:
    """A request path taken apart: resource, namespace, name and subresource."""

    kind: Kind
    namespace: str
    name: str = ""
    sub: str = ""
    query: dict[str, str] = field(default_factory=dict)


class ApiHandler(BaseHTTPRequestHandler):
    """One request to the stand-in; every answer is JSON (logs: text), failures are `Status` bodies."""

    standin: StandinApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("stand-in %s", format % args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ApiError(400, "BadRequest", f"the request body is not JSON: {e}") from e

    def _serve(self, method: str) -> None:
        try:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._body()
                raise ApiError(401, "Unauthorized", "Unauthorized")
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            discovery = self._discovery(parts.path)
            if discovery is not None and method == "GET":
                self._send(200, discovery)
                return
            route = self._route(parts.path, query)
            code, answer = self._dispatch(method, route)
            if isinstance(answer, str):
                self._send(code, answer, "text/plain")
            elif answer is not None:
                self._send(code, answer)
        except ApiError as e:
            self._send(e.code, e.body())
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:
            logger.exception("stand-in failed on %s %s", method, self.path)
            self._send(500, ApiError(500, "InternalError", f"stand-in error: {e!r}").body())

    def _discovery(self, path: str) -> Obj | None:
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-standin", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        groups = sorted({(k.group, k.version) for k in KINDS.values() if k.group})
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                        "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                    }
                    for g, v in groups
                ],
            }
        for group, version in [("", "v1"), *groups]:
            prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
            if path.rstrip("/") == prefix:
                return {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": f"{group}/{version}" if group else version,
                    "resources": [
                        {
                            "name": k.plural,
                            "singularName": k.kind.lower(),
                            "namespaced": k.namespaced,
                            "kind": k.kind,
                            "verbs": [
                                "create",
                                "delete",
                                "deletecollection",
                                "get",
                                "list",
                                "patch",
                                "update",
                                "watch",
                            ],
                        }
                        for k in KINDS.values()
                        if k.group == group and k.version == version
                    ],
                }
        return None

    def _route(self, path: str, query: dict[str, str]) -> Route:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace = ""
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        kind = KINDS.get(rest[0])
        if kind is None or kind.group != group or kind.version != version:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        return Route(
            kind, namespace, rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else "", query
        )

    def _dispatch(self, method: str, route: Route) -> tuple[int, Any]:
        server, kind = self.standin, route.kind
        store = server.store
        ns = route.namespace
        if method == "GET" and not route.name:
            terms = parse_selector(route.query.get("labelSelector", ""))
            if route.query.get("watch") in ("true", "1"):
                self._watch(route, terms)
                return 200, None
            items = [
                o
                for o in store.list(kind.plural, ns or None, terms)
                if field_matches(o, route.query.get("fieldSelector", ""))
            ]
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
            with store.lock:
                rv = str(store.rv)
            return 200, {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": {"resourceVersion": rv},
                "items": items,
            }
        if method == "POST" and not route.name:
            body = self._body()
            self._check_body(kind, ns, body)
            return 201, server.create(kind.plural, ns, body)
        if method == "DELETE" and not route.name:
            terms = parse_selector(route.query.get("labelSelector", ""))
            options = self._body()
            deleted = []
            for obj in store.list(kind.plural, ns or None, terms):
                server.delete(
                    kind.plural, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], options
                )
                deleted.append(obj)
            return 200, {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": {},
                "items": deleted,
            }
        key_ns = ns if kind.namespaced else ""
        if route.sub == "log" and kind.plural == "pods" and method == "GET":
            return 200, server.pod_logs(ns, route.name, route.query)
        if route.sub == "scale" and kind.plural in ("deployments", "statefulsets", "replicasets"):
            return self._scale(method, route)
        if route.sub not in ("", "status"):
            raise ApiError(404, "NotFound", f"the stand-in has no subresource {route.sub} of {kind.plural}")
        if method == "GET":
            return 200, store.require(kind.plural, key_ns, route.name)
        if method == "PUT":
            body = self._body()
            self._check_body(kind, ns, body)
            if body.get("metadata", {}).get("name") != route.name:
                raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
            return 200, server.replace(kind.plural, key_ns, body, status_only=route.sub == "status")
        if method == "PATCH":
            current = store.require(kind.plural, key_ns, route.name)
            patched = self._patch(current, self._body())
            updated = server.replace(kind.plural, key_ns, patched, status_only=route.sub == "status")
            return 200, updated
        if method == "DELETE":
            return 200, server.delete(kind.plural, key_ns, route.name, self._body())
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed here")

    def _check_body(self, kind: Kind, namespace: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        if body.get("kind") not in (None, kind.kind) or body.get("apiVersion") not in (
            None,
            kind.api_version,
        ):
            raise ApiError(
                400,
                "BadRequest",
                f"the body is a {body.get('apiVersion')}/{body.get('kind')}, "
                f"not a {kind.api_version}/{kind.kind}",
            )
        body_ns = (body.get("metadata") or {}).get("namespace")
        if kind.namespaced and body_ns and body_ns != namespace:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )

    def _patch(self, current: Obj, patch: Any) -> Obj:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type == "application/json-patch+json":
            result = json_patch(current, patch)
        elif content_type == "application/merge-patch+json":
            result = merge_patch(current, patch)
        elif content_type == "application/strategic-merge-patch+json":
            result = strategic_merge_patch(current, patch)
        else:
            raise ApiError(
                415, "UnsupportedMediaType", f"the stand-in does not support patches of type {content_type!r}"
            )
        return result

    def _scale(self, method: str, route: Route) -> tuple[int, Any]:
        store = self.standin.store
        obj = store.require(route.kind.plural, route.namespace, route.name)
        if method in ("PUT", "PATCH"):
            body = self._body()
            scale_now = self._scale_body(obj)
            wanted = body if method == "PUT" else self._patch(scale_now, body)
            replicas = int((wanted.get("spec") or {}).get("replicas", obj["spec"].get("replicas", 1)))
            obj["spec"]["replicas"] = replicas
            stale = (wanted.get("metadata") or {}).get("resourceVersion")
            obj["metadata"]["resourceVersion"] = stale or obj["metadata"]["resourceVersion"]
            obj = self.standin.replace(route.kind.plural, route.namespace, obj)
        elif method != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on scale")
        return 200, self._scale_body(obj)

    @staticmethod
    def _scale_body(obj: Obj) -> Obj:
        labels = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: obj["metadata"][k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in labels.items()),
            },
        }

    def _watch(self, route: Route, terms: list[SelectorTerm]) -> None:
        """A chunked stream of watch events until `timeoutSeconds` (at most 60 s) or the server stops."""
        store = self.standin.store
        timeout = min(float(route.query.get("timeoutSeconds", 60)), 60.0)
        deadline = time.monotonic() + timeout
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def emit(event_type: str, obj: Obj) -> None:
            line = json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        def wanted(plural: str, namespace: str, obj: Obj) -> bool:
            return (
                plural == route.kind.plural
                and (not route.namespace or namespace == route.namespace)
                and matches(terms, obj["metadata"].get("labels"))
                and field_matches(obj, route.query.get("fieldSelector", ""))
            )

        start = route.query.get("resourceVersion")
        if not start or start == "0":
            for obj in store.list(route.kind.plural, route.namespace or None, terms):
                emit("ADDED", obj)
            with store.lock:
                cursor = store.rv
        else:
            cursor = int(start)
            with store.lock:
                expired = bool(store.events) and cursor < store.events[0].rv - 1
            if expired:
                emit("ERROR", ApiError(410, "Expired", f"too old resource version: {cursor}").body())
                self.wfile.write(b"0\r\n\r\n")
                return
        while not self.standin.stopping.is_set() and time.monotonic() < deadline:
            with store.changed:
                pending = [e for e in store.events if e.rv > cursor]
                if not pending:
                    store.changed.wait(min(1.0, max(0.0, deadline - time.monotonic())))
                    continue
            for event in pending:
                cursor = event.rv
                if wanted(event.plural, event.namespace, event.obj):
                    emit(event.type, event.obj)
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True
