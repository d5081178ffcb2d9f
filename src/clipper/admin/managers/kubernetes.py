"""KubernetesContainerManager: a cluster's Redis, frontends and model versions as Kubernetes objects.

Clipper 0.4's constructor, on the official client with `apps/v1` only. Objects come from kube_manifests; the
cluster's settings ride on its management Deployment and replica counts kept across a stop on its Secret, so
`connect()` from any process rebuilds everything from the cluster itself. Rollout waits log progress and
fail at once with a pod's reason (an image that cannot be pulled, a crash loop with its last log lines).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clipper.admin.managers import kube_manifests as km
from clipper.admin.managers.base import ContainerManager
from clipper.admin.managers.kube_api import KubeApi, load_api_client
from clipper.errors import ClusterError
from clipper.types import parse_input_shape

logger = logging.getLogger(__name__)


class KubernetesContainerManager(ContainerManager):
    """Clipper 0.4's Kubernetes manager: one Deployment per role and per model version, Redis as a
    StatefulSet with a persistent volume, Services by `service_types`."""

    def __init__(
        self,
        cluster_name: str = "default-cluster",
        kubernetes_proxy_addr: str | None = None,
        redis_ip: str | None = None,
        redis_port: int = 6379,
        useInternalIP: bool = False,  # Clipper 0.4's keyword
        namespace: str = "default",
        service_types: dict[str, str] | None = None,
        create_namespace_if_not_exists: bool = False,
        *,
        image: str | None = None,
        registry: str | None = None,
        image_pull_policy: str = "IfNotPresent",
        image_pull_secrets: Iterable[str] = (),
        resources: dict[str, dict[str, dict[str, str]]] | None = None,
        storage_class: str | None = None,
        redis_storage: str = "1Gi",
        ephemeral_redis: bool = False,
        admin_auth: bool = True,
        rpc_auth: bool = True,
        query_auth: bool = False,
        redis_password: str | None = None,
        rollout_timeout_s: float = 300.0,
        kubeconfig: str | None = None,
        context: str | None = None,
    ) -> None:
        """Settings are checked here, before anything is created; credentials come from `kubeconfig` (default
        `KUBECONFIG` or ~/.kube/config), or the pod's service account when it runs in a cluster.

        `image`: the runtime image of every role (default `[<registry>/]clipper/clipper:<version>`).
        `resources`: per role (`redis`, `management`, `query`, `model`) `{"requests"|"limits": {...}}`.
        `ephemeral_redis`: Redis data on an emptyDir (lost with its pod) instead of a PersistentVolumeClaim.
        Auth switches and `redis_password` as LocalContainerManager's.
        """
        self.cluster_name = cluster_name
        self.proxy_addr = kubernetes_proxy_addr.rstrip("/") if kubernetes_proxy_addr else None
        self.use_internal_ip = useInternalIP
        self.create_namespace = create_namespace_if_not_exists
        self.registry = registry
        self.rollout_timeout_s = rollout_timeout_s
        self._redis_password = redis_password
        if image is None:
            image = f"{registry.rstrip('/')}/{km.DEFAULT_IMAGE}" if registry else km.DEFAULT_IMAGE
        if ephemeral_redis and redis_ip is None:
            logger.warning("ephemeral_redis: the cluster's state is lost whenever the Redis pod is")
        self.spec = km.ClusterSpec.build(
            name=cluster_name,
            namespace=namespace,
            image=image,
            image_pull_policy=image_pull_policy,
            image_pull_secrets=tuple(image_pull_secrets),
            service_types=dict(service_types or {}),
            redis_host=redis_ip,
            redis_port=redis_port,
            ephemeral_redis=ephemeral_redis,
            storage_class=storage_class,
            redis_storage=redis_storage,
            resources=dict(resources or {}),
            admin_auth=admin_auth,
            rpc_auth=rpc_auth,
            query_auth=query_auth,
            redis_password=redis_ip is None or redis_password is not None,
        )
        self.names = self.spec.names
        self.api = KubeApi(load_api_client(kubeconfig, context), self.spec.namespace, rollout_timeout_s)
        self._addrs: dict[str, str] = {}
        # The cluster Secret's data (tokens), read once: every admin call asks for the token. Forgotten
        # with the addresses, whenever this manager starts, connects to or stops a cluster.
        self._secret_data: dict[str, str] | None = None
        self._resumed: dict[tuple[str, str], int] = {}
        self._checked: dict[tuple[str, str], float] = {}

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    def _selector(self, role: str | None = None, model: tuple[str, str] | None = None) -> str:
        labels = km.selector(self.cluster_name, role, model) if role else {}
        return ",".join(f"{k}={v}" for k, v in labels.items()) or km.cluster_selector(self.cluster_name)

    # ----- starting -----

    def start_clipper(
        self,
        query_frontend_image: str = "",
        mgmt_frontend_image: str = "",
        frontend_exporter_image: str = "",
        cache_size: int = 33554432,
        qf_http_thread_pool_size: int = 1,
        qf_http_timeout_request: int = 5,
        qf_http_timeout_content: int = 300,
        num_frontend_replicas: int = 1,
    ) -> None:
        """Create the cluster's objects and wait for their rollouts; start again the model versions a
        previous `stop_all` kept. Everything is checked before the first object is created."""
        spec = km.ClusterSpec.build(
            **{
                **self.spec.model_dump(),
                "num_frontends": num_frontend_replicas,
                "cache_size_bytes": cache_size,
            }
        )  # the per-role image names of Clipper 0.4 are ignored: every role runs the manager's `image`
        self._ensure_namespace(spec)
        running = self.api.list("Deployment", self._selector()) + self.api.list(
            "StatefulSet", self._selector()
        )
        if running:
            raise ClusterError(
                f"Cluster {self.cluster_name} cannot be started because it already exists in namespace "
                f"{self.namespace}. Please use ClipperConnection.connect() to connect to it."
            )
        for kind in ("Service", "ServiceAccount", "Role", "RoleBinding"):  # leftovers of a failed start
            self.api.delete(kind, self._selector())
        plan = self._ensure_secret(spec)
        self.spec = spec
        try:
            for obj in [km.service_account(spec), *km.management_access(spec)]:
                self.api.create(obj)
            if spec.redis_host is None:
                for obj in km.redis_objects(spec):
                    self.api.create(obj)
                self.api.wait_rollout("StatefulSet", self.names.redis, 1, self._selector("redis"))
            for obj in km.management_objects(spec) + km.query_objects(spec):
                self.api.create(obj)
            self.api.wait_rollout("Deployment", self.names.management, 1, self._selector("management"))
            self.api.wait_rollout("Deployment", self.names.query, spec.num_frontends, self._selector("query"))
        except BaseException:
            self.stop_all(graceful=False)
            raise
        self._addrs, self._secret_data = {}, None
        logger.info("Started cluster %s in namespace %s", self.cluster_name, self.namespace)
        for model in plan:
            logger.info(
                "Resuming model %s:%s with %d replica(s) as before", model.name, model.version, model.replicas
            )
            self.api.create(km.model_deployment(spec, model))
            self._resumed[(model.name, model.version)] = model.replicas

    def _ensure_namespace(self, spec: km.ClusterSpec) -> None:
        """Create a missing namespace if asked to, else refuse it (on a 404 only: a 403 may hide one)."""
        if self.api.read("Namespace", self.namespace) is not None:
            return
        if not self.create_namespace:
            raise ClusterError(
                f"Namespace {self.namespace} does not exist; create it (kubectl create namespace "
                f"{self.namespace}) or pass create_namespace_if_not_exists=True. Nothing was created."
            )
        self.api.create(km.namespace(spec))

    def _ensure_secret(self, spec: km.ClusterSpec) -> list[km.ModelSpec]:
        """Create or update the Secret so it holds exactly the keys `spec` wants (existing tokens kept);
        return the model versions a previous stop_all recorded on it."""
        old = self.api.read("Secret", self.names.secret)
        values = {k: base64.b64decode(v).decode() for k, v in ((old.data or {}) if old else {}).items()}
        body = km.secret(spec, km.secret_values(spec, values, self._redis_password))
        plan: list[km.ModelSpec] = []
        if old is None:
            self.api.create(body)
        else:
            body["metadata"]["resourceVersion"] = old.metadata.resource_version
            saved = (old.metadata.annotations or {}).get(km.REPLICAS_ANNOTATION)
            plan = [km.ModelSpec.model_validate(m) for m in json.loads(saved)] if saved else []
            self.api.call(
                "replace the cluster Secret",
                self.api.core.replace_namespaced_secret,
                self.names.secret,
                self.namespace,
                body,
            )
        return plan

    def resumed_replicas(self) -> dict[tuple[str, str], int]:
        return dict(self._resumed)

    # ----- waiting -----

    def check_model_replicas(self, name: str, version: str) -> None:
        """Raise if a replica of the version cannot start (bad image, crash loop); at most once a second."""
        now = time.monotonic()
        if now - self._checked.get((name, version), 0.0) < 1.0:
            return
        self._checked[(name, version)] = now
        self.api.raise_pod_problem(self._selector("model", (name, version)), f"Model {name}:{version}")

    # ----- connecting and addresses -----

    def connect(self) -> None:
        """Rebuild the settings from this cluster's management Deployment and the frontend count."""
        found = self.api.read("Deployment", self.names.management)
        if found is None:
            raise ClusterError(
                f"No Clipper cluster named {self.cluster_name} in namespace {self.namespace}; start it first."
            )
        spec = km.spec_from_annotations(found.metadata.annotations)
        self.spec = spec.model_copy(update={"num_frontends": self.get_num_frontends()})
        self._addrs, self._secret_data = {}, None

    def _node_host(self) -> str:
        """A node address for NodePort Services: external ones first; InternalIP with `useInternalIP`, or
        when the nodes have nothing else (kind, minikube, k3s)."""
        nodes = self.api.call("list nodes (needed for NodePort addresses)", self.api.core.list_node).items
        kinds = ("InternalIP",) if self.use_internal_ip else ("ExternalIP", "ExternalDNS", "InternalIP")
        for kind in kinds:
            for node in nodes:
                for addr in node.status.addresses or []:
                    if addr.type == kind:
                        return str(addr.address)
        raise ClusterError("No node address found for NodePort Services; use kubernetes_proxy_addr")

    def _service_addr(self, service: str) -> str:
        if service in self._addrs:
            return self._addrs[service]
        svc = self.api.call(
            f"read Service {service}", self.api.core.read_namespaced_service, service, self.namespace
        )
        port = svc.spec.ports[0]
        if self.proxy_addr:
            addr = (
                f"{self.proxy_addr}/api/v1/namespaces/{self.namespace}/services/{service}:{port.name}/proxy"
            )
        elif svc.spec.type == "LoadBalancer":
            ingress = (svc.status.load_balancer.ingress or []) if svc.status.load_balancer else []
            if not ingress:
                raise ClusterError(f"Service {service} has no load-balancer address yet; try again shortly")
            addr = f"{ingress[0].ip or ingress[0].hostname}:{port.port}"
        elif svc.spec.type == "NodePort":
            addr = f"{self._node_host()}:{port.node_port}"
        else:  # ClusterIP: reachable from inside the cluster only
            addr = f"{service}.{self.namespace}.svc:{port.port}"
        self._addrs[service] = addr
        return addr

    def get_admin_addr(self) -> str:
        return self._service_addr(self.names.management)

    def get_query_addr(self) -> str:
        return self._service_addr(self.names.query)

    def get_metric_addr(self) -> str:
        """The query frontends serve Prometheus text at /metrics (their pods carry the scrape annotations)."""
        return self.get_query_addr()

    def cluster_secret(self, name: str) -> str | None:
        """From the cluster's Secret (read on first use)."""
        if self._secret_data is None:
            found = self.api.read("Secret", self.names.secret)
            self._secret_data = dict(found.data or {}) if found is not None else {}
        value = self._secret_data.get(name)
        return base64.b64decode(value).decode() if value else None

    # ----- frontends -----

    def get_num_frontends(self) -> int:
        found = self.api.read("Deployment", self.names.query)
        return int(found.spec.replicas or 0) if found is not None else 0

    def set_num_frontends(self, num_frontends: int) -> None:
        """Scale the one query Deployment; a removed pod drains (preStop, then SIGTERM) and model containers
        follow the frontend list without restarting."""
        if num_frontends < 1:
            raise ClusterError("A cluster needs at least one query frontend")
        self._scale(self.names.query, num_frontends)
        self.api.wait_rollout("Deployment", self.names.query, num_frontends, self._selector("query"))
        self.spec = self.spec.model_copy(update={"num_frontends": num_frontends})

    def _scale(self, name: str, replicas: int) -> None:
        self.api.call(
            f"scale Deployment {name}",
            self.api.apps.patch_namespaced_deployment,
            name,
            self.namespace,
            {"spec": {"replicas": replicas}},
        )

    # ----- models -----

    def get_num_replicas(self, name: str, version: str) -> int:
        found = self.model_deployment(name, version)
        return int(found.spec.replicas or 0) if found is not None else 0

    def model_deployment(self, name: str, version: str) -> Any:
        return self.api.read("Deployment", self.names.model(name, version))

    def model_pods(self, name: str, version: str) -> list[Any]:
        """The pods of one model version's Deployment."""
        return self.api.list("Pod", self._selector("model", (name, version)))

    def set_num_replicas(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str,
        num_replicas: int,
        *,
        input_shape: list[int] | None = None,
    ) -> None:
        """`replicas=num_replicas` on the version's one Deployment (created if missing); wait for it."""
        model = km.ModelSpec.build(
            name=name,
            version=version,
            input_type=input_type,
            image=image,
            replicas=num_replicas,
            input_shape=input_shape,
        )
        if self.model_deployment(name, version) is None:
            self.api.create(km.model_deployment(self.spec, model))
        else:
            self._scale(self.names.model(name, version), num_replicas)
        self.api.wait_rollout(
            "Deployment",
            self.names.model(name, version),
            num_replicas,
            self._selector("model", (name, version)),
        )

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """Build the model image with the local Docker engine, on the runtime image; push it to the registry
        (`container_registry`, else the manager's). Without one, the cluster must see the local image
        (kind load docker-image, minikube image load)."""
        try:
            import docker as docker_sdk

            from clipper.admin import images
        except ModuleNotFoundError as e:
            raise ClusterError(
                f"Building model images needs the '{e.name}' package: pip install 'clipper[docker]'"
            ) from None
        try:
            docker = docker_sdk.from_env()
        except docker_sdk.errors.DockerException as e:
            raise ClusterError(f"Building a model image needs a Docker engine: {e}") from None
        registry = container_registry or self.registry
        image = images.model_image_name(self.cluster_name, name, str(version), registry)
        base = base_image if base_image and not images.is_clipper_role_image(base_image) else None
        images.build_model_image(
            docker, image, model_data_path, base or images.ensure_runtime_image(docker), pkgs_to_install
        )
        if registry:
            images.push_image(docker, image)
        else:
            logger.warning(
                "Image %s is only on this Docker engine; the cluster must be able to use it", image
            )
        return image

    def stop_models(self, models: dict[str, list[str]]) -> None:
        for name, versions in models.items():
            for version in versions:
                self.api.delete("Deployment", self._selector("model", (name, str(version))))

    def stop_all_model_containers(self) -> None:
        self.api.delete("Deployment", self._selector("model"))

    # ----- logs and stopping -----

    def get_logs(self, logging_dir: str) -> list[str]:
        """One file per container of this cluster's pods: `<pod>_<container>.log`."""
        target = Path(logging_dir)
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for pod in self.api.list("Pod", self._selector()):
            for container in pod.spec.containers:
                text = self.api.call(
                    f"read the log of {pod.metadata.name}",
                    self.api.core.read_namespaced_pod_log,
                    pod.metadata.name,
                    self.namespace,
                    container=container.name,
                    missing_ok=True,
                )
                path = target / f"{pod.metadata.name}_{container.name}.log"
                path.write_text(str(text or ""))
                written.append(str(path))
        return written

    def stop_all(self, graceful: bool = True, remove_state: bool = False) -> None:
        """Delete this cluster's Deployments, StatefulSet, Services, ServiceAccounts and Role (nothing of
        another cluster). Kept for the next start: the Secret, with each model version's replica count,
        and Redis's volume; `remove_state` deletes those too."""
        grace = None if graceful else 0
        plan = [
            km.ModelSpec(
                name=d.metadata.labels[km.MODEL_NAME_LABEL],
                version=d.metadata.labels[km.MODEL_VERSION_LABEL],
                input_type=(d.metadata.annotations or {}).get(km.INPUT_TYPE_ANNOTATION, "doubles"),
                input_shape=parse_input_shape((d.metadata.annotations or {}).get(km.INPUT_SHAPE_ANNOTATION)),
                image=(d.metadata.annotations or {}).get(km.IMAGE_ANNOTATION, self.spec.image),
                replicas=int(d.spec.replicas or 0),
            ).model_dump()
            for d in self.api.list("Deployment", self._selector("model"))
        ]
        self.api.delete("Deployment", self._selector("model"), grace)
        for kind in ("Deployment", "StatefulSet", "Service", "ServiceAccount", "Role", "RoleBinding"):
            self.api.delete(kind, self._selector(), grace)
        if remove_state:
            self.api.delete("Secret", self._selector())
            self.api.delete("PersistentVolumeClaim", self._selector())
        elif plan:
            patch = {"metadata": {"annotations": {km.REPLICAS_ANNOTATION: json.dumps(plan)}}}
            self.api.call(
                "record replica counts on the cluster Secret",
                self.api.core.patch_namespaced_secret,
                self.names.secret,
                self.namespace,
                patch,
                missing_ok=True,
            )
        self._addrs, self._secret_data = {}, None
