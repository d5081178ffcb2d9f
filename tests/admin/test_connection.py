"""ClipperConnection against a real local cluster: apps, models, links, replicas, versions, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from clipper.admin import ClipperConnection, ClipperException, LocalContainerManager, UnconnectedException
from clipper.admin.deployers.python import create_endpoint, deploy_python_closure
from clipper.errors import ClipperError, ClusterError
from tests.admin.conftest import predict_until


def predict_url(conn: ClipperConnection, app: str) -> str:
    return f"http://{conn.get_query_addr()}/{app}/predict"


def served(answer: dict) -> bool:
    return answer.get("default") is False


def test_create_endpoint_serves_the_closure(cluster: ClipperConnection) -> None:
    offset = 10.0

    def add_offset(inputs):
        return [str(sum(x) + offset) for x in inputs]

    create_endpoint(cluster, "sum-app", "doubles", add_offset, default_output="-1.0")
    answer = predict_until(predict_url(cluster, "sum-app"), {"input": [1.0, 2.5]}, served)
    assert answer["output"] == 13.5

    assert "sum-app" in cluster.get_all_apps()
    info = cluster.get_app_info("sum-app")
    assert info is not None and info["linked_models"] == ["sum-app"] and info["input_type"] == "doubles"
    assert cluster.get_linked_models("sum-app") == ["sum-app"]
    assert "sum-app:1" in cluster.get_all_models()
    [model] = [m for m in cluster.get_all_models(verbose=True) if m["model_name"] == "sum-app"]
    assert model["is_current_version"] and model["model_version"] == "1"
    assert cluster.get_current_model_version("sum-app") == "1"
    assert cluster.get_model_info("sum-app", "1")["input_type"] == "doubles"
    assert any(r.startswith("sum-app:1:") for r in cluster.get_all_model_replicas())
    replica = cluster.get_all_model_replicas(verbose=True)[0]
    assert cluster.get_model_replica_info(
        replica["model_name"], replica["model_version"], replica["model_replica_id"]
    )
    assert cluster.get_app_info("no-such-app") is None
    assert cluster.get_model_info("sum-app", "99") is None


def test_replicas_scale_up_and_down(cluster: ClipperConnection) -> None:
    deploy_python_closure(cluster, "scaled", 1, "doubles", lambda xs: [str(len(x)) for x in xs])
    assert cluster.get_num_replicas("scaled") == 1
    cluster.set_num_replicas("scaled", 2)
    assert cluster.get_num_replicas("scaled") == 2
    cluster.wait_for_model("scaled", "1", num_replicas=2, timeout_s=30)
    cluster.set_num_replicas("scaled", 1)
    assert cluster.get_num_replicas("scaled", "1") == 1
    cluster.stop_models(["scaled"])
    assert cluster.get_num_replicas("scaled", "1") == 0


def test_new_version_is_current_and_can_be_rolled_back(cluster: ClipperConnection) -> None:
    cluster.register_application("versions", "strings", "none", 1_000_000)
    deploy_python_closure(cluster, "versioned", 1, "strings", lambda xs: ["v1" for _ in xs])
    cluster.link_model_to_app("versions", "versioned")
    url = predict_url(cluster, "versions")
    assert predict_until(url, {"input": "x"}, lambda a: a["output"] == "v1")["output"] == "v1"
    deploy_python_closure(cluster, "versioned", 2, "strings", lambda xs: ["v2" for _ in xs])
    assert cluster.get_current_model_version("versioned") == "2"
    assert predict_until(url, {"input": "x"}, lambda a: a["output"] == "v2")["output"] == "v2"
    cluster.set_model_version("versioned", "1")
    assert predict_until(url, {"input": "x"}, lambda a: a["output"] == "v1")["output"] == "v1"
    cluster.stop_inactive_model_versions(["versioned"])
    assert cluster.get_num_replicas("versioned", "2") == 0
    assert cluster.get_num_replicas("versioned", "1") == 1


def test_error_status_becomes_clipper_exception(cluster: ClipperConnection) -> None:
    cluster.register_application("dup", "doubles", "0", 1000)
    with pytest.raises(ClipperException) as e:
        cluster.register_application("dup", "doubles", "0", 1000)
    assert e.value.msg.startswith("Received error status code: 400 and message: ")
    assert "already exists" in e.value.msg
    assert isinstance(e.value, ClipperError)
    cluster.unregister_application("dup")
    assert "dup" not in cluster.get_all_apps()


def test_unlink_and_containerless_model(cluster: ClipperConnection) -> None:
    cluster.register_application("bare-app", "integers", "7", 1000)
    cluster.register_model("bare", "1", "integers")
    cluster.link_model_to_app("bare-app", "bare")
    with pytest.raises(ClipperException, match="containerless"):
        cluster.set_num_replicas("bare", 2)
    cluster.unlink_model_from_app("bare-app", "bare")
    assert cluster.get_linked_models("bare-app") == []


def test_build_model_needs_an_image_builder(cluster: ClipperConnection, tmp_path: Path) -> None:
    with pytest.raises(ClipperException, match="DockerContainerManager"):
        cluster.build_model("m", "1", str(tmp_path), "python:3.11")
    with pytest.raises(ClipperException, match="Invalid value"):
        cluster.deploy_model("Bad_Name", "1", "doubles", str(tmp_path))


def test_missing_packages_are_refused_locally(cluster: ClipperConnection) -> None:
    with pytest.raises(ClipperException, match="pip install surely-not-a-package-xyz"):
        deploy_python_closure(
            cluster, "pkgs", 1, "doubles", lambda xs: xs, pkgs_to_install=["surely-not-a-package-xyz"]
        )


def test_dead_replica_is_reported_with_its_log(cluster: ClipperConnection, tmp_path: Path) -> None:
    with pytest.raises(ClipperException, match=r"model-broken-1-0\.log") as failed:  # no func.pkl
        cluster.deploy_model("broken", "1", "doubles", str(tmp_path))
    assert "No model function" in str(failed.value) and "Traceback" not in str(failed.value)
    assert "broken:1" not in cluster.get_all_models()


def test_connect_from_another_process(cluster: ClipperConnection) -> None:
    cluster.register_application("seen-elsewhere", "bytes", "x", 1000)
    cm = cluster.cm
    assert isinstance(cm, LocalContainerManager)
    script = (
        "import json, sys\n"
        "from clipper_admin import ClipperConnection, LocalContainerManager\n"
        "conn = ClipperConnection(LocalContainerManager(cluster_name=sys.argv[1], state_dir=sys.argv[2]))\n"
        "conn.connect()\n"
        "print(json.dumps({'apps': conn.get_all_apps(), 'query': conn.get_query_addr()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, cm.cluster_name, str(cm.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert "seen-elsewhere" in seen["apps"] and seen["query"] == cluster.get_query_addr()


def test_metrics_logs_and_inspection(cluster: ClipperConnection, tmp_path: Path) -> None:
    r = requests.get(f"http://{cluster.get_metric_addr()}/metrics", timeout=10)
    assert r.status_code == 200
    assert cluster.inspect_instance()
    logs = cluster.get_clipper_logs(str(tmp_path / "logs"))
    assert any(p.endswith("query-0.log") for p in logs) and all(Path(p).exists() for p in logs)


def test_predict_function_checks_locally(cluster: ClipperConnection) -> None:
    def double(xs):
        return [str(x * 2) for x in xs]

    assert cluster.test_predict_function({"input": [1.0, 2.0]}, double, "doubles") == ["[2. 4.]"]
    assert cluster.test_predict_function({"input": "a"}, double, "integers") == "Invalid input type"


def test_calls_need_a_connection(tmp_path: Path) -> None:
    conn = ClipperConnection(LocalContainerManager(cluster_name="nothing-here", state_dir=tmp_path))
    with pytest.raises(UnconnectedException):
        conn.get_all_apps()
    with pytest.raises(ClusterError, match="No running cluster named 'nothing-here'"):
        conn.connect()
