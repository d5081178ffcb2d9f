"""The packages a framework model records must be installed in exactly those versions: the local manager
refuses a mismatch at deploy time (before any replica starts) and the runtime refuses it at load time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest

from clipper.admin import ClipperConnection, ClipperException
from clipper.admin.deployers.framework import save_framework_model
from clipper.errors import ClipperError
from clipper.runtime.frameworks import load_model_function
from tests.conftest import free_port

pytest.importorskip("sklearn")
from sklearn.linear_model import LinearRegression

from clipper.admin.deployers.sklearn import sklearn_saver

OLD = "0.20.3"  # a scikit-learn this environment certainly does not have


def predict(model, inputs):
    return [str(v) for v in model.predict(inputs)]


@pytest.fixture
def stale_model(tmp_path):
    """A saved scikit-learn model whose metadata says it was saved with scikit-learn OLD."""
    model = LinearRegression().fit(np.eye(3), np.arange(3.0))
    directory = tmp_path / "model"
    save_framework_model(predict, sklearn_saver(model), directory)
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["packages"]["scikit-learn"] = OLD
    (directory / "metadata.json").write_text(json.dumps(metadata))
    return directory


def test_local_deploy_refuses_a_recorded_version_that_is_not_installed(
    cluster: ClipperConnection, stale_model
):
    with pytest.raises(ClipperException) as e:
        cluster.deploy_model("stale", "1", "doubles", str(stale_model))
    assert f"saved with scikit-learn=={OLD}" in e.value.msg
    assert f"scikit-learn {version('scikit-learn')} is installed" in e.value.msg
    assert f"pip install 'scikit-learn=={OLD}'" in e.value.msg
    assert cluster.get_num_replicas("stale", "1") == 0
    assert "stale:1" not in cluster.get_all_models()


def test_runtime_refuses_to_load_a_mismatched_model(stale_model):
    with pytest.raises(ClipperError, match=rf"scikit-learn=={OLD} but scikit-learn \S+ is installed"):
        load_model_function(stale_model)


def test_runtime_names_a_recorded_package_that_is_missing(stale_model):
    metadata = json.loads((stale_model / "metadata.json").read_text())
    metadata["packages"] = {"no-such-distribution": "1.0"}
    (stale_model / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(
        ClipperError, match=r"no-such-distribution==1\.0 but no-such-distribution is not installed"
    ):
        load_model_function(stale_model)


def test_container_process_exits_with_the_mismatch_in_its_log(stale_model):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPPER_")} | {
        "CLIPPER_MODEL_NAME": "stale",
        "CLIPPER_MODEL_VERSION": "1",
        "CLIPPER_MODEL_PATH": str(stale_model),
        "CLIPPER_IP": "127.0.0.1",
        "CLIPPER_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "clipper.runtime"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert (
        f"saved with scikit-learn=={OLD} but scikit-learn {version('scikit-learn')} is installed"
        in done.stderr
    )
