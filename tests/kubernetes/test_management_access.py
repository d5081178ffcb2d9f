"""The management frontend's API rights on Kubernetes: its own ServiceAccount, a namespaced Role with only
what scaling and reading replicas needs, bound to that account; every other pod keeps no token."""

from __future__ import annotations

from typing import Any

import pytest

from clipper.admin.managers import kube_manifests as km

kubernetes_validate = pytest.importorskip("kubernetes_validate")

SPEC = km.ClusterSpec.build(name="demo", namespace="team-a")
MODEL = km.ModelSpec.build(name="sum", version="1", image="demo-sum:1")


def objects() -> list[dict[str, Any]]:
    return km.cluster_objects(SPEC, {"auth_token": "a", "rpc_token": "r"}, [MODEL])


def one(kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod_spec(name: str) -> dict[str, Any]:
    return dict(one("Deployment", name)["spec"]["template"]["spec"])


def test_role_grants_only_scaling_and_reading_replicas() -> None:
    role = one("Role", "demo-clipper-mgmt")
    assert role["metadata"]["namespace"] == "team-a"
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}  # fmt: skip
    assert granted == {
        ("apps", "deployments", "get"), ("apps", "deployments", "list"), ("apps", "deployments", "patch"),
        ("apps", "deployments/scale", "get"), ("apps", "deployments/scale", "patch"),
        ("", "pods", "get"), ("", "pods", "list"), ("", "pods/log", "get"),
    }  # fmt: skip
    assert not any(k in ("ClusterRole", "ClusterRoleBinding") for k in (o["kind"] for o in objects()))


def test_binding_names_the_management_account_only() -> None:
    binding = one("RoleBinding", "demo-clipper-mgmt")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "demo-clipper-mgmt",
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "demo-clipper-mgmt", "namespace": "team-a"}
    ]


def test_only_the_management_pod_mounts_a_token() -> None:
    mgmt = pod_spec("demo-mgmt")
    assert mgmt["serviceAccountName"] == "demo-clipper-mgmt" and mgmt["automountServiceAccountToken"] is True
    env = {e["name"]: e.get("value") for e in mgmt["containers"][0]["env"]}
    assert env["CLIPPER_REPLICA_CONTROL"] == "kubernetes"
    assert env["CLIPPER_CLUSTER_NAME"] == "demo" and env["CLIPPER_NAMESPACE"] == "team-a"
    for name in ("demo-query", SPEC.names.model("sum", "1")):
        spec = pod_spec(name)
        assert spec["serviceAccountName"] == "demo-clipper" and spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("kind", ["ServiceAccount", "Role", "RoleBinding"])
def test_access_objects_validate_strictly(kind: str) -> None:
    for obj in km.management_access(SPEC):
        if obj["kind"] == kind:
            kubernetes_validate.validate(obj, "1.37.0", strict=True)
