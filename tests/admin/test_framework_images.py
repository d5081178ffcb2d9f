"""Framework model images on a real Docker cluster: a PyTorch and an ONNX model deployed with their
deployers are served from images holding exactly the recorded packages (CPU torch, no CUDA), the runtime
image's own pins unchanged; versions that differ are refused before the model goes live.

A cold torch image build takes about two minutes on two shared cores (pip unpacks and byte-compiles the
190 MB wheel, then the 860 MB layer is committed); later builds with the same packages take seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import numpy as np
import pytest

from clipper.admin import images, model_packages
from clipper.admin.connection import ClipperConnection
from clipper.admin.exceptions import ClipperException
from clipper.runtime.closure import save_closure
from tests.admin.conftest import new_docker_manager, predict_until

pytestmark = pytest.mark.docker

INPUTS = [[0.5, -1.0, 2.0], [3.0, 0.25, -0.75], [0.0, 0.0, 1.0]]
COLD_TORCH_BUILD_S = 420  # see the module docstring; cached builds are far below the default 120 s


@pytest.fixture(scope="module")
def conn(
    docker_client: docker.DockerClient, runtime_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClipperConnection]:
    """One Docker cluster for the module; its containers, state and model images are removed afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLIPPER_HOME", str(tmp_path_factory.mktemp("home")))
        manager = new_docker_manager()
        connection = ClipperConnection(manager)
        connection.start_clipper(runtime_image, runtime_image)
        try:
            yield connection
        finally:
            manager.stop_all(graceful=False, remove_state=True)
            for image in docker_client.images.list(filters={"reference": f"{manager.cluster_name}-*"}):
                for tag in image.tags:
                    docker_client.images.remove(tag, noprune=True)  # keep the layers: the cache


def serve(conn: ClipperConnection, name: str) -> Any:
    """Link model `name` to a new app of the same name and predict INPUTS in one batch through it (the
    model's list outputs reach the client as JSON lists)."""
    conn.register_application(name, "doubles", "[]", 10_000_000)
    conn.link_model_to_app(name, name)
    url = f"http://{conn.cm.get_query_addr()}/{name}/predict"
    answer = predict_until(
        url,
        {"input_batch": INPUTS},
        lambda a: all(not p.get("default", True) for p in a.get("batch_predictions", [{}])),
        timeout_s=90,
    )
    predictions = answer.get("batch_predictions")
    assert predictions and all(not p["default"] for p in predictions), answer
    return [p["output"] for p in predictions]


def image_distributions(client: docker.DockerClient, image: str) -> dict[str, str]:
    return model_packages.image_environment(client, image).installed()


def check_added_exactly(
    client: docker.DockerClient, image: str, runtime_image: str, packages: dict[str, str]
) -> dict[str, str]:
    """The image has the recorded versions and every runtime pin unchanged (its installers may be newer);
    returns the distributions it adds to the runtime image."""
    have, runtime = image_distributions(client, image), image_distributions(client, runtime_image)
    assert {name: have.get(name) for name in packages} == packages
    kept = {n: v for n, v in runtime.items() if n not in model_packages.INSTALLERS}
    assert {n: have.get(n) for n in kept} == kept
    assert json.loads(client.images.get(image).labels[model_packages.PACKAGES_LABEL]) == packages
    return {n: v for n, v in have.items() if n not in runtime}


@pytest.mark.timeout(COLD_TORCH_BUILD_S)
def test_pytorch_model_image_has_cpu_torch_and_serves_its_outputs(
    conn: ClipperConnection, docker_client: docker.DockerClient, runtime_image: str
) -> None:
    torch = pytest.importorskip("torch")
    from clipper.admin.deployers.pytorch import deploy_pytorch_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()

    def predict(module: Any, inputs: list[Any]) -> Any:
        import torch

        with torch.no_grad():
            return module(torch.as_tensor(np.stack(inputs), dtype=torch.float32)).tolist()

    deploy_pytorch_model(conn, "torchlin", 1, "doubles", predict, model)
    with torch.no_grad():
        expected = model(torch.tensor(INPUTS, dtype=torch.float32)).tolist()
    np.testing.assert_allclose(serve(conn, "torchlin"), expected, rtol=1e-5, atol=1e-6)

    image = images.model_image_name(conn.cm.cluster_name, "torchlin", "1")
    added = check_added_exactly(docker_client, image, runtime_image, {"torch": torch.__version__})
    assert not [n for n in added if n.startswith(("nvidia", "cuda", "triton"))], added
    probe = "import torch; print(torch.version.cuda)"
    out = docker_client.containers.run(image, ["python", "-c", probe], remove=True, network_mode="none")
    assert out.decode().strip() == "None"


def affine_onnx() -> Any:
    """A tiny ONNX model built in place (X @ W + B, 3 -> 2), without any training framework."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights, bias = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"])],
        "affine",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "B")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(proto)
    return proto


def onnx_predictor() -> Any:
    """What the replicas run: the session on the batch (nested, so it is pickled by value: this test
    module is not in the image)."""

    def predict(session: Any, inputs: list[Any]) -> Any:
        return session.run(None, {"X": np.stack(inputs).astype(np.float32)})[0].tolist()

    return predict


def onnx_expected(proto: Any) -> Any:
    """onnxruntime's own answer for INPUTS, in this process."""
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": np.array(INPUTS, dtype=np.float32)})[0].tolist()


def test_onnx_model_image_has_onnxruntime_only_and_serves_its_outputs(
    conn: ClipperConnection, docker_client: docker.DockerClient, runtime_image: str
) -> None:
    ort = pytest.importorskip("onnxruntime")
    from clipper.admin.deployers.onnx import deploy_onnx_model

    proto = affine_onnx()
    deploy_onnx_model(conn, "affine", 1, "doubles", onnx_predictor(), proto)
    np.testing.assert_allclose(serve(conn, "affine"), onnx_expected(proto), rtol=1e-5, atol=1e-6)

    image = images.model_image_name(conn.cm.cluster_name, "affine", "1")
    added = check_added_exactly(docker_client, image, runtime_image, {"onnxruntime": ort.__version__})
    assert "torch" not in added and "onnxruntime" in added, added


def test_base_image_version_of_a_recorded_package_is_refused_before_building(
    conn: ClipperConnection, runtime_image: str, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    save_closure(lambda xs: [str(x) for x in xs], model_dir)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    (model_dir / "metadata.json").write_text(json.dumps(metadata | {"packages": {"numpy": "1.26.0"}}))
    with pytest.raises(ClipperException, match=r"already has numpy \S+ \(the model records 1\.26\.0\)"):
        conn.build_and_deploy_model("clash", "1", "doubles", str(model_dir), runtime_image)
    assert "clash" not in json.dumps(conn.get_all_models())


def test_image_whose_packages_changed_is_refused_before_going_live(
    conn: ClipperConnection, docker_client: docker.DockerClient, runtime_image: str, tmp_path: Path
) -> None:
    """pkgs_to_install moves a recorded package to another version: the built image is removed, the model
    never registered."""
    model_dir = tmp_path / "model"
    save_closure(lambda xs: [str(x) for x in xs], model_dir)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    (model_dir / "metadata.json").write_text(json.dumps(metadata | {"packages": {"inflection": "0.5.1"}}))
    with pytest.raises(ClipperException, match=r"inflection: recorded 0\.5\.1, image has 0\.5\.0"):
        conn.build_and_deploy_model(
            "moved", "1", "doubles", str(model_dir), runtime_image, pkgs_to_install=["inflection==0.5.0"]
        )
    assert "moved" not in json.dumps(conn.get_all_models())
    assert not images.image_exists(docker_client, images.model_image_name(conn.cm.cluster_name, "moved", "1"))
