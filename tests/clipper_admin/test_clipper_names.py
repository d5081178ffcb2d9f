"""Clipper 0.4 names our clipper_admin honours: manager attributes, CLIPPER_TEMP_DIR, Clipper's image names
(noop and closure containers) on the local manager, inspect_instance's JSON dict, and state kept on stop."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

import clipper_admin
from clipper.admin import ClipperConnection, ClipperException
from clipper.admin.clipper_images import ImageKind, image_kind
from tests.admin.conftest import make_manager, predict_until


def test_managers_have_centralize_log_and_the_package_a_temp_dir() -> None:
    assert make_manager(Path("/nonexistent")).centralize_log is False
    assert Path(clipper_admin.CLIPPER_TEMP_DIR).is_absolute()
    assert "CLIPPER_TEMP_DIR" in clipper_admin.__all__


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("clipper/noop-container:0.4.1", ImageKind.NOOP),
        ("localhost:5000/clipper/noop-container", ImageKind.NOOP),
        ("clipper/python-closure-container:0.4.1", ImageKind.CLOSURE),
        ("clipper/python312-closure-container:develop", ImageKind.CLOSURE),
        ("default", ImageKind.CLOSURE),
        ("someone/noop-container:1", None),
        ("clipper/query_frontend:0.4.1", None),
    ],
)
def test_clipper_image_names_are_recognised(image: str, kind: ImageKind | None) -> None:
    assert image_kind(image) is kind


def test_a_framework_container_names_the_deployer_to_use_instead() -> None:
    with pytest.raises(ClipperException, match=r"Deploy it with clipper_admin\.deployers\.pytorch"):
        image_kind("clipper/pytorch36-container:0.4.1")
    with pytest.raises(ClipperException, match=r"no deployer here: export the model to ONNX"):
        image_kind("clipper/pyspark-container:0.4.1")


def test_noop_container_answers_as_clippers_did_and_metrics_come_as_clippers_json(
    tmp_path: Path,
) -> None:
    conn = ClipperConnection(make_manager(tmp_path))
    conn.start_clipper()
    try:
        conn.register_application("noop", "doubles", "DEFAULT", 5_000_000)
        conn.build_and_deploy_model("noop", 1, "doubles", str(tmp_path), "clipper/noop-container:0.4.1")
        conn.link_model_to_app("noop", "noop")
        url = f"http://{conn.get_query_addr()}/noop/predict"
        answer = predict_until(url, {"input": [1.0, 2.0]}, lambda a: a.get("default") is False)
        assert answer["output"] == 1.0 and answer["default"] is False
        with pytest.raises(ClipperException, match="closure container"):
            conn.deploy_model("bad", 1, "doubles", "clipper/python36-closure-container:0.4.1")

        metrics = conn.inspect_instance()
        assert isinstance(metrics, dict)
        counters = {k: v for entry in metrics["counters"] for k, v in entry.items()}
        assert counters["app:noop:num_predictions"]["count"] != "0"
        assert isinstance(counters["model:noop:1:num_predictions"]["count"], str)
        histograms = {k: v for entry in metrics["histograms"] for k, v in entry.items()}
        assert set(histograms["app:noop:prediction_latency"]) >= {"unit", "size", "mean", "p99"}
        prometheus = requests.get(f"http://{conn.get_query_addr()}/metrics", timeout=5)
        assert prometheus.text.startswith("#")  # Prometheus keeps its text
    finally:
        conn.stop_all(remove_state=True)


def test_a_restart_keeps_the_apps_and_lists_only_live_replicas(tmp_path: Path) -> None:
    manager = make_manager(tmp_path)
    conn = ClipperConnection(manager)
    conn.start_clipper()
    conn.register_application("kept", "doubles", "DEFAULT", 5_000_000)
    conn.deploy_model("kept", 1, "doubles", "clipper/noop-container:0.4.1", num_replicas=2)
    conn.stop_all(graceful=False)
    again = ClipperConnection(make_manager(tmp_path, manager.cluster_name))
    again.start_clipper()
    try:
        assert "kept" in again.get_all_apps()
        replicas = again.get_all_model_replicas(verbose=True)
        assert len(replicas) == again.get_num_replicas("kept", "1") == 2
    finally:
        again.stop_all(remove_state=True)
    fresh = ClipperConnection(make_manager(tmp_path, manager.cluster_name))
    fresh.start_clipper()
    try:
        assert fresh.get_all_apps() == []
    finally:
        fresh.stop_all(remove_state=True)
