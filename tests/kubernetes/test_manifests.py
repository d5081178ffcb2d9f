"""Every object the Kubernetes manager or `clipper kubernetes render` makes: strict schema validation on three
Kubernetes versions, and the names, labels, probes, resources, secrets and Service types they carry."""

from __future__ import annotations

import base64
import itertools
import subprocess
import sys
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from clipper.admin.managers import kube_manifests as km
from clipper.cli import cli
from clipper.errors import ClipperError

kubernetes_validate = pytest.importorskip("kubernetes_validate")

# The three newest minor versions the installed kubernetes-validate ships (1.37.0 ships 1.32 to 1.37).
VERSIONS = ("1.35.0", "1.36.0", "1.37.0")
SECRET = {"auth_token": "a", "rpc_token": "r", "redis_password": "p", "redis.conf": 'requirepass "p"'}
MODELS = [
    km.ModelSpec.build(name="sum", version="1", image="reg.example/demo-sum:1", replicas=2),
    km.ModelSpec.build(name="echo", version="2", input_type="strings", image="demo-echo:2"),
]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    (c,) = obj["spec"]["template"]["spec"]["containers"]
    return c


def variants() -> dict[str, list[dict[str, Any]]]:
    """Every shape the builders make: defaults, external Redis, ephemeral Redis, auth off, LoadBalancer."""
    return {
        "default": km.cluster_objects(
            km.ClusterSpec.build(name="demo"), SECRET, MODELS, create_namespace=True
        ),
        "external-redis": km.cluster_objects(
            km.ClusterSpec.build(name="ext", redis_host="redis.example", redis_password=False), {}, MODELS
        ),
        "ephemeral-lb": km.cluster_objects(
            km.ClusterSpec.build(
                name="eph",
                namespace="team-a",
                ephemeral_redis=True,
                storage_class="fast",
                service_types={"query": "LoadBalancer", "management": "ClusterIP"},
                image_pull_secrets=("regcred",),
                admin_auth=False,
                rpc_auth=False,
                num_frontends=3,
                resources={"model": {"limits": {"memory": "4Gi"}}},
            ),
            SECRET,
            MODELS,
        ),
    }


def rendered(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--cluster", "demo", "kubernetes", "render", *args])
    assert result.exit_code == 0, result.output
    return [d for d in yaml.safe_load_all(result.output) if d]


@pytest.mark.parametrize("version", VERSIONS, ids=[f"k8s-{v.rsplit('.', 1)[0]}" for v in VERSIONS])
def test_every_object_validates_strictly(version):
    """Manager objects (all variants) and `render` output validate with no unknown field on this version."""
    objects = list(itertools.chain(*variants().values()))
    objects += rendered("--frontends", "2", "--model", "sum:1=reg/demo-sum:1", "--create-namespace")
    assert {o["kind"] for o in objects} == {
        "Namespace", "ServiceAccount", "Secret", "Service", "StatefulSet", "Deployment",
        "Role", "RoleBinding",
    }  # fmt: skip
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} on {version}: {e.message}")


def test_strict_validation_catches_an_unknown_field():
    """The schema check is strict: a misspelt field fails it (so the test above can fail)."""
    deployment = one(variants()["default"], "Deployment", "demo-query")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_render_prints_what_the_manager_builds():
    """`render` is the manager's builders: the same objects, except the Secret's fresh tokens."""
    spec = km.ClusterSpec.build(name="demo", num_frontends=2)
    built = km.cluster_objects(
        spec, None, [km.ModelSpec.build(name="sum", version="1", image="reg/demo-sum:1")]
    )
    assert rendered("--frontends", "2", "--model", "sum:1=reg/demo-sum:1", "--no-secret") == built
    (secret,) = by_kind(rendered(), "Secret")
    assert sorted(secret["data"]) == ["auth_token", "redis.conf", "redis_password", "rpc_token"]
    other = by_kind(rendered(), "Secret")[0]
    assert other["data"]["auth_token"] != secret["data"]["auth_token"]  # generated per render


def test_two_clusters_in_one_namespace_never_select_each_others_objects():
    """Every selector of cluster `a` matches none of cluster `ab`'s pods and vice versa; names differ."""
    from clipper.admin.managers.base import CLIPPER_DOCKER_LABEL

    a = km.cluster_objects(km.ClusterSpec.build(name="a"), SECRET, MODELS)
    ab = km.cluster_objects(km.ClusterSpec.build(name="ab"), SECRET, MODELS)
    assert not {o["metadata"]["name"] for o in a} & {o["metadata"]["name"] for o in ab}
    for mine, theirs in ((a, ab), (ab, a)):
        pods = [
            o["spec"]["template"]["metadata"]["labels"] for o in theirs if "template" in o.get("spec", {})
        ]
        selectors = [o["spec"]["selector"]["matchLabels"] for o in by_kind(mine, "Deployment")]
        selectors += [o["spec"]["selector"] for o in by_kind(mine, "Service")]
        selectors += [o["spec"]["selector"]["matchLabels"] for o in by_kind(mine, "StatefulSet")]
        for sel, pod in itertools.product(selectors, pods):
            assert not sel.items() <= pod.items(), f"{sel} selects a pod of the other cluster"
        for obj in mine:
            assert (
                obj["metadata"]["labels"][CLIPPER_DOCKER_LABEL]
                == mine[0]["metadata"]["labels"][CLIPPER_DOCKER_LABEL]
            )
            assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] in ("a", "ab")


def test_each_selector_picks_only_its_own_role_and_model_version():
    """In one cluster, each workload's selector matches its own pods only (model `a`/`1-2` vs `a-1`/`2`)."""
    models = [
        km.ModelSpec.build(name="a", version="1-2", image="i:1"),
        km.ModelSpec.build(name="a-1", version="2", image="i:1"),
    ]
    objects = km.cluster_objects(km.ClusterSpec.build(name="demo"), SECRET, models)
    workloads = by_kind(objects, "Deployment") + by_kind(objects, "StatefulSet")
    for owner, other in itertools.permutations(workloads, 2):
        sel = owner["spec"]["selector"]["matchLabels"]
        assert sel.items() <= owner["spec"]["template"]["metadata"]["labels"].items()
        assert not sel.items() <= other["spec"]["template"]["metadata"]["labels"].items()
    assert len({o["metadata"]["name"] for o in workloads}) == len(workloads)


def test_long_model_names_stay_dns_labels():
    """A 63-character model name and version give a Deployment name of at most 63 characters, still unique."""
    names = km.Names("c" * km.MAX_CLUSTER_NAME)
    long1, long2 = names.model("m" * 63, "v" * 63), names.model("m" * 63, "v" * 62 + "w")
    assert len(long1) <= 63 and len(long2) <= 63 and long1 != long2
    with pytest.raises(ClipperError, match=r"name: .*at most"):
        km.ClusterSpec.build(name="c" * (km.MAX_CLUSTER_NAME + 1))


def test_probes_prestop_and_grace_period():
    """Frontends probe /health and /admin/ping; the query frontend drains within its grace period."""
    objects = variants()["default"]
    query = container(one(objects, "Deployment", "demo-query"))
    assert query["readinessProbe"]["httpGet"] == {"path": "/health", "port": 1337}
    assert query["livenessProbe"]["httpGet"]["path"] == "/health"
    mgmt = container(one(objects, "Deployment", "demo-mgmt"))
    assert mgmt["readinessProbe"]["httpGet"] == {"path": "/admin/ping", "port": 1338}
    pod = one(objects, "Deployment", "demo-query")["spec"]["template"]["spec"]
    drain_s = int(next(e["value"] for e in query["env"] if e["name"] == "CLIPPER_DRAIN_TIMEOUT_MS")) / 1000
    assert query["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > km.PRESTOP_SLEEP_S + drain_s
    model = container(one(objects, "Deployment", "demo-model-sum-1"))
    assert model["readinessProbe"]["exec"]["command"][:2] == ["sh", "-c"]
    assert ":1B58 01 " in model["readinessProbe"]["exec"]["command"][2]  # ESTABLISHED to port 7000
    redis = container(one(objects, "StatefulSet", "demo-redis"))
    assert redis["readinessProbe"]["tcpSocket"] == {"port": 6379}


def test_processes_bind_to_the_pod_ip_and_find_services_by_name():
    """Downward-API POD_IP first, then `$(POD_IP)` in later env and Redis args; Services by short name."""
    objects = variants()["default"]
    query = container(one(objects, "Deployment", "demo-query"))
    env = {e["name"]: e.get("value") for e in query["env"]}
    assert query["env"][0] == {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert env["CLIPPER_HTTP_HOST"] == env["CLIPPER_RPC_HOST"] == "$(POD_IP)"
    assert env["CLIPPER_REDIS_URL"] == "redis://demo-redis:6379"
    assert query["command"] == ["python", "-m", "clipper.frontends.query"]
    model = container(one(objects, "Deployment", "demo-model-sum-1"))
    menv = {e["name"]: e.get("value") for e in model["env"]}
    assert (menv["CLIPPER_IP"], menv["CLIPPER_PORT"]) == ("demo-query-rpc", "7000")
    assert model["image"] == "reg.example/demo-sum:1" and model["command"][-1] == "clipper.runtime"
    redis = container(one(objects, "StatefulSet", "demo-redis"))
    assert redis["command"][0] == "redis-server"
    assert redis["command"][redis["command"].index("--bind") + 1] == "$(POD_IP)"
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"


def test_secrets_are_mounted_never_in_env_and_models_see_only_the_rpc_token():
    """No secret value appears anywhere but the Secret; each role mounts only the keys it needs."""
    objects = variants()["default"]
    (secret,) = by_kind(objects, "Secret")
    assert base64.b64decode(secret["data"]["rpc_token"]) == b"r"
    outside = yaml.safe_dump([o for o in objects if o["kind"] != "Secret"])
    assert 'requirepass "p"' not in outside and "cg==" not in outside  # value, base64 of "r"
    mounted = {}
    for obj in by_kind(objects, "Deployment") + by_kind(objects, "StatefulSet"):
        c = container(obj)
        (volume,) = [v for v in obj["spec"]["template"]["spec"]["volumes"] if "secret" in v]
        assert c["volumeMounts"][-1] == {
            "name": volume["name"],
            "mountPath": km.SECRETS_MOUNT,
            "readOnly": True,
        }
        assert all("valueFrom" not in e or "secretKeyRef" not in e["valueFrom"] for e in c["env"])
        mounted[obj["metadata"]["name"]] = sorted(i["key"] for i in volume["secret"]["items"])
    assert mounted == {
        "demo-mgmt": ["auth_token", "redis_password"],
        "demo-query": ["redis_password", "rpc_token"],
        "demo-model-sum-1": ["rpc_token"],
        "demo-model-echo-2": ["rpc_token"],
        "demo-redis": ["redis.conf"],
    }


def test_auth_off_mounts_nothing_a_role_does_not_have():
    """With admin and RPC auth off and an external Redis without password, no pod mounts the Secret."""
    spec = km.ClusterSpec.build(
        name="open", redis_host="r", redis_password=False, admin_auth=False, rpc_auth=False
    )
    assert spec.secret_keys() == []
    for obj in by_kind(km.cluster_objects(spec, {}, MODELS), "Deployment"):
        assert "volumes" not in obj["spec"]["template"]["spec"]
        assert "CLIPPER_SECRETS_DIR" not in {e["name"] for e in container(obj)["env"]}


def test_resources_defaults_and_overrides():
    """Every container has requests and limits; a user's entry replaces only itself."""
    objects = variants()["ephemeral-lb"]
    for obj in by_kind(objects, "Deployment") + by_kind(objects, "StatefulSet"):
        res = container(obj)["resources"]
        assert set(res) == {"requests", "limits"} and {"cpu", "memory"} <= set(res["requests"])
    model = container(one(objects, "Deployment", "eph-model-sum-1"))["resources"]
    assert model["limits"] == {"cpu": "2", "memory": "4Gi"}
    with pytest.raises(ClipperError, match=r"resources: .*unknown role 'gpu'"):
        km.ClusterSpec.build(name="x", resources={"gpu": {}})
    with pytest.raises(ClipperError, match=r"model.requests.disk"):
        km.ClusterSpec.build(name="x", resources={"model": {"requests": {"disk": "1"}}})


def test_redis_persists_on_a_claim_unless_ephemeral():
    """Default: a PersistentVolumeClaim template (with the storage class when given); ephemeral: emptyDir."""
    persistent = one(variants()["default"], "StatefulSet", "demo-redis")["spec"]
    (claim,) = persistent["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert claim["metadata"]["labels"]["ai.clipper.container.label"] == "demo"
    eph = one(variants()["ephemeral-lb"], "StatefulSet", "eph-redis")["spec"]
    assert "volumeClaimTemplates" not in eph
    assert {"name": "data", "emptyDir": {}} in eph["template"]["spec"]["volumes"]
    assert not by_kind(variants()["external-redis"], "StatefulSet")


def test_service_types_default_nodeport_and_choices():
    """NodePort for the query and management Services by default, ClusterIP inside; LoadBalancer asked."""
    types = {o["metadata"]["name"]: o["spec"]["type"] for o in by_kind(variants()["default"], "Service")}
    inside = {"demo-redis": "ClusterIP", "demo-query-rpc": "ClusterIP"}
    assert types == {**inside, "demo-mgmt": "NodePort", "demo-query": "NodePort"}
    lb = {o["metadata"]["name"]: o["spec"]["type"] for o in by_kind(variants()["ephemeral-lb"], "Service")}
    assert (lb["eph-query"], lb["eph-mgmt"]) == ("LoadBalancer", "ClusterIP")


@pytest.mark.parametrize(
    ("types", "message"),
    [
        ({"query": "ExternalName"}, r"query='ExternalName' is not one of"),
        ({"frontend": "NodePort"}, r"unknown key\(s\) \['frontend'\]"),
    ],
)
def test_a_bad_service_type_is_refused_with_the_field_named(types, message):
    with pytest.raises(ClipperError, match=rf"service_types: .*{message}"):
        km.ClusterSpec.build(name="x", service_types=types)


def test_manager_refuses_a_bad_service_type_before_it_touches_the_api(tmp_path):
    """The constructor checks settings before it even reads credentials: a bad type costs no API call."""
    pytest.importorskip("kubernetes")
    from clipper.admin import KubernetesContainerManager

    missing = tmp_path / "no-kubeconfig"
    with pytest.raises(ClipperError, match="service_types"):
        KubernetesContainerManager(service_types={"query": "Bogus"}, kubeconfig=str(missing))
    with pytest.raises(ClipperError, match="No usable Kubernetes credentials"):
        KubernetesContainerManager(kubeconfig=str(missing))


def test_spec_round_trips_through_the_management_annotation():
    """connect() rebuilds the spec from the management Deployment's annotation alone."""
    spec = km.ClusterSpec.build(
        name="demo", namespace="ns", num_frontends=3, service_types={"query": "ClusterIP"}
    )
    (mgmt, _) = km.management_objects(spec)
    assert km.spec_from_annotations(mgmt["metadata"]["annotations"]) == spec
    with pytest.raises(ClipperError, match="annotation"):
        km.spec_from_annotations({})


def test_prometheus_annotations_and_pull_policy():
    """Query frontend pods carry scrape annotations; images use IfNotPresent unless told otherwise."""
    objects = variants()["default"]
    query = one(objects, "Deployment", "demo-query")
    assert query["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "1337"
    assert {container(o)["imagePullPolicy"] for o in by_kind(objects, "Deployment")} == {"IfNotPresent"}
    with pytest.raises(ClipperError, match="image_pull_policy"):
        km.ClusterSpec.build(name="x", image_pull_policy="Sometimes")


def test_default_image_is_the_runtime_image():
    """The manifests' default image is the tag images.build_runtime_image makes."""
    images = pytest.importorskip("clipper.admin.images")
    assert images.runtime_image() == km.DEFAULT_IMAGE


def test_the_manager_imports_without_the_kubernetes_client():
    """Both import paths work without the client; using the class names the missing extra."""
    code = (
        "import sys; sys.modules['kubernetes'] = None\n"
        "from clipper.admin import ClipperConnection\n"
        "import clipper_admin\n"
        "try:\n"
        "    clipper_admin.KubernetesContainerManager\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ClipperError" in out.stdout and "pip install 'clipper[kubernetes]'" in out.stdout
