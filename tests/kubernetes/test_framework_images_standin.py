"""Kubernetes serves framework models from the same model images as Docker: an ONNX model deployed with its
deployer through KubernetesContainerManager (stand-in API server, Docker-backed pods) runs the image that
holds exactly the recorded onnxruntime, and answers as onnxruntime does here."""

from __future__ import annotations

import json

import docker
import numpy as np
import pytest

from clipper.admin.connection import ClipperConnection
from clipper.admin.model_packages import PACKAGES_LABEL
from tests.admin.conftest import predict_until
from tests.admin.test_framework_images import INPUTS, affine_onnx, onnx_expected, onnx_predictor
from tests.kubernetes.conftest import Standin, standin_manager

pytestmark = pytest.mark.docker


def test_onnx_model_on_kubernetes_runs_the_framework_image(
    standin_kubelet: Standin, docker_client: docker.DockerClient, runtime_image: str
) -> None:
    standin = standin_kubelet
    ort = pytest.importorskip("onnxruntime")
    from clipper.admin.deployers.onnx import deploy_onnx_model

    manager = standin_manager(standin, runtime_image)
    conn = ClipperConnection(manager)
    conn.start_clipper()
    image = f"{manager.cluster_name}-affine:1"
    try:
        proto = affine_onnx()
        deploy_onnx_model(conn, "affine", 1, "doubles", onnx_predictor(), proto, base_image=runtime_image)
        conn.register_application("affine", "doubles", "[]", 10_000_000)
        conn.link_model_to_app("affine", "affine")
        answer = predict_until(
            f"http://{conn.get_query_addr()}/affine/predict",
            {"input_batch": INPUTS},
            lambda a: all(not p.get("default", True) for p in a.get("batch_predictions", [{}])),
            timeout_s=90,
        )
        np.testing.assert_allclose(
            [p["output"] for p in answer["batch_predictions"]], onnx_expected(proto), rtol=1e-5, atol=1e-6
        )
        templates = [
            c["image"]
            for d in standin.server.store.list("deployments")
            if d["metadata"]["name"].startswith(manager.cluster_name)
            for c in d["spec"]["template"]["spec"]["containers"]
        ]
        assert image in templates, templates
        labels = docker_client.images.get(image).labels
        assert json.loads(labels[PACKAGES_LABEL]) == {"onnxruntime": ort.__version__}
    finally:
        manager.stop_all(graceful=False)
        if docker_client.images.list(name=image):
            docker_client.images.remove(image)
