"""The few Kubernetes API calls the manager makes, with its errors as ClusterError, and rollout waits that
log progress and fail at once with a pod's reason instead of running into their timeout."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from clipper.admin.managers.kube_manifests import Manifest
from clipper.errors import ClusterError

logger = logging.getLogger(__name__)

# Waiting reasons no retry cures without the user: fail the rollout at once and say why.
FATAL_REASONS = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
)
LOG_TAIL_LINES = 20
POLL_S = 0.5


class KubeApi:
    """Core and apps API of one namespace: create, list and delete by label selector, wait for rollouts."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str, rollout_timeout_s: float) -> None:
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.rbac = k8s.RbacAuthorizationV1Api(api_client)
        self.namespace = namespace
        self.rollout_timeout_s = rollout_timeout_s

    def call(self, what: str, fn: Callable[..., Any], *args: Any, missing_ok: bool = False, **kw: Any) -> Any:
        """One API call; its failures become a ClusterError saying what was attempted (404 -> None if ok)."""
        try:
            return fn(*args, **kw)
        except ApiException as e:
            if missing_ok and e.status == 404:
                return None
            raise ClusterError(f"Kubernetes refused to {what}: {e.status} {api_message(e)}") from None
        except urllib3.exceptions.HTTPError as e:
            host = self.core.api_client.configuration.host
            raise ClusterError(f"Cannot reach the Kubernetes API at {host} to {what}: {e}") from None

    def read(self, kind: str, name: str, *, missing_ok: bool = True) -> Any:
        """The `kind` named `name` in this namespace (a Namespace: that one); None if missing and ok."""
        readers: dict[str, Callable[..., Any]] = {
            "Namespace": self.core.read_namespace,
            "Secret": self.core.read_namespaced_secret,
            "Deployment": self.apps.read_namespaced_deployment,
            "StatefulSet": self.apps.read_namespaced_stateful_set,
        }
        args = (name,) if kind == "Namespace" else (name, self.namespace)
        return self.call(f"read {kind} {name}", readers[kind], *args, missing_ok=missing_ok)

    def create(self, obj: Manifest) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        creators: dict[str, Callable[..., Any]] = {
            "Namespace": self.core.create_namespace,
            "ServiceAccount": self.core.create_namespaced_service_account,
            "Secret": self.core.create_namespaced_secret,
            "Service": self.core.create_namespaced_service,
            "Deployment": self.apps.create_namespaced_deployment,
            "StatefulSet": self.apps.create_namespaced_stateful_set,
            "Role": self.rbac.create_namespaced_role,
            "RoleBinding": self.rbac.create_namespaced_role_binding,
        }
        args = (obj,) if kind == "Namespace" else (self.namespace, obj)
        self.call(f"create {kind} {name}", creators[kind], *args)

    def list(self, kind: str, selector: str) -> list[Any]:
        listers: dict[str, Callable[..., Any]] = {
            "Deployment": self.apps.list_namespaced_deployment,
            "StatefulSet": self.apps.list_namespaced_stateful_set,
            "Service": self.core.list_namespaced_service,
            "ServiceAccount": self.core.list_namespaced_service_account,
            "Secret": self.core.list_namespaced_secret,
            "PersistentVolumeClaim": self.core.list_namespaced_persistent_volume_claim,
            "Pod": self.core.list_namespaced_pod,
            "Role": self.rbac.list_namespaced_role,
            "RoleBinding": self.rbac.list_namespaced_role_binding,
        }
        found = self.call(f"list {kind}s", listers[kind], self.namespace, label_selector=selector)
        return list(found.items) if found is not None else []

    def delete(self, kind: str, selector: str, grace_s: int | None = None) -> None:
        """Delete every `kind` of this namespace matching `selector`; their pods go with them."""
        deleters: dict[str, Callable[..., Any]] = {
            "Deployment": self.apps.delete_namespaced_deployment,
            "StatefulSet": self.apps.delete_namespaced_stateful_set,
            "Service": self.core.delete_namespaced_service,
            "ServiceAccount": self.core.delete_namespaced_service_account,
            "Secret": self.core.delete_namespaced_secret,
            "PersistentVolumeClaim": self.core.delete_namespaced_persistent_volume_claim,
            "Role": self.rbac.delete_namespaced_role,
            "RoleBinding": self.rbac.delete_namespaced_role_binding,
        }
        body = k8s.V1DeleteOptions(propagation_policy="Background", grace_period_seconds=grace_s)
        for obj in self.list(kind, selector):
            name = obj.metadata.name
            # The answer (the object, or a Status, depending on kind and server) is not needed, nor parsed.
            answer = self.call(
                f"delete {kind} {name}",
                deleters[kind],
                name,
                self.namespace,
                body=body,
                missing_ok=True,
                _preload_content=False,
            )
            if answer is not None:
                answer.read()  # drained, so the pooled connection can be reused
                answer.release_conn()

    def wait_rollout(self, kind: str, name: str, want: int, selector: str) -> None:
        """Until `want` pods of the Deployment/StatefulSet are updated and ready (and no more run); log
        progress, fail at once on a pod that cannot start, give up after `rollout_timeout_s`."""
        deadline = time.monotonic() + self.rollout_timeout_s
        shown = None
        while True:
            obj = self.read(kind, name, missing_ok=False)
            st = obj.status  # None until the controller first writes it (just after a create)
            ready, total = (st.ready_replicas or 0, st.replicas or 0) if st else (0, 0)
            updated = (st.updated_replicas or 0) if st else 0
            if (
                st is not None
                and (st.observed_generation or 0) >= (obj.metadata.generation or 0)
                and ready >= want
                and updated >= want
                and total <= want
            ):
                return
            if shown != (ready, total):
                logger.info("%s %s: %d of %d replica(s) ready", kind, name, ready, want)
                shown = (ready, total)
            self.raise_pod_problem(selector, f"{kind} {name}")
            if time.monotonic() > deadline:
                waited = f"{self.rollout_timeout_s:.0f} s"
                raise ClusterError(
                    f"{kind} {name} has {ready} of {want} replica(s) ready after {waited} "
                    f"({self.pod_summary(selector)}); see get_clipper_logs()"
                )
            time.sleep(POLL_S)

    def raise_pod_problem(self, selector: str, owner: str) -> None:
        """Raise a ClusterError naming the first pod that cannot start by itself, with its reason."""
        for pod in self.list("Pod", selector):
            for cs in pod.status.container_statuses or []:
                waiting = cs.state.waiting if cs.state else None
                reason = waiting.reason if waiting else None
                if waiting is not None and reason in FATAL_REASONS:
                    detail = f"{reason}: {waiting.message or ''}".rstrip(": ")
                    raise ClusterError(
                        f"{owner}: pod {pod.metadata.name} cannot start: {detail}"
                        + (
                            " (is the image pushed to a registry the cluster can pull from?)"
                            if "Image" in str(reason) or "Pull" in str(reason)
                            else ""
                        )
                    )
                if reason == "CrashLoopBackOff":
                    tail = self.log_tail(pod.metadata.name, cs.name)
                    raise ClusterError(
                        f"{owner}: pod {pod.metadata.name} keeps crashing (CrashLoopBackOff, "
                        f"{cs.restart_count} restarts); last log lines:\n{tail}"
                    )

    def log_tail(self, pod: str, container: str) -> str:
        for previous in (True, False):
            try:
                return str(
                    self.core.read_namespaced_pod_log(
                        pod, self.namespace, container=container, tail_lines=LOG_TAIL_LINES, previous=previous
                    )
                )
            except (ApiException, urllib3.exceptions.HTTPError):
                continue
        return "(no log available)"

    def pod_summary(self, selector: str) -> str:
        pods = self.list("Pod", selector)
        return ", ".join(f"{p.metadata.name}: {p.status.phase}" for p in pods) or "no pods"


def load_api_client(kubeconfig: str | None, context: str | None) -> k8s.ApiClient:
    """An API client from the pod's service account inside a cluster, else from the kubeconfig file."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        else:
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                # The client reads KUBECONFIG once, when imported; a script may set it later.
                config_file=kubeconfig or os.environ.get("KUBECONFIG") or None,
                context=context,
                client_configuration=configuration,
            )
    except (ConfigException, OSError) as e:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ClusterError(f"No usable Kubernetes credentials ({where}): {e}") from None
    return k8s.ApiClient(configuration)


def api_message(e: ApiException) -> str:
    """The `message` of a Kubernetes Status body, else the HTTP reason."""
    try:
        return str(json.loads(e.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(e.reason)
