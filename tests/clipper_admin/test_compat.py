"""Clipper 0.4 compatibility: our `clipper_admin` import paths, and the real clipper_admin 0.4.1 client
(from PyPI, in its own virtualenv) driving our management API and query frontend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clipper.admin import ClipperConnection
from clipper.admin.managers.local import LocalContainerManager
from clipper.runtime.closure import save_closure

# What `import clipper_admin` 0.4.1 imports at module level (its docker and kubernetes managers included).
IMPORT_TIME_DEPS = ["requests", "numpy", "cloudpickle", "pyyaml", "docker", "kubernetes", "jinja2"]

COMPAT_SCRIPT = r"""
import json, sys, time
import requests
from clipper_admin import ClipperConnection
from clipper_admin.container_manager import ContainerManager

query_addr, admin_addr, model_dir = sys.argv[1:4]

class OurCluster(ContainerManager):
    # Points Clipper's own client at our processes; it never starts anything.
    cluster_identifier = "compat"
    def start_clipper(self, *args): pass
    def connect(self): pass
    def deploy_model(self, name, version, input_type, image, num_replicas=1): pass
    def get_num_replicas(self, name, version): return 1
    def set_num_replicas(self, name, version, input_type, image, num_replicas): pass
    def get_logs(self, logging_dir): return []
    def stop_models(self, models): pass
    def stop_all_model_containers(self): pass
    def stop_all(self, graceful=True): pass
    def get_admin_addr(self): return admin_addr
    def get_query_addr(self): return query_addr
    def get_metric_addr(self): return query_addr

conn = ClipperConnection(OurCluster())
conn.connect()
out = {}
conn.register_application("compat", "doubles", "-1.0", 1000000)
out["apps"] = conn.get_all_apps()
conn.register_model("compat-model", "1", "doubles", image=model_dir, labels=["a"])
conn.register_model("compat-model", "2", "doubles")
out["current_after_v2"] = conn.get_current_model_version("compat-model")
conn.set_model_version("compat-model", "1")
out["current"] = conn.get_current_model_version("compat-model")
conn.link_model_to_app("compat", "compat-model")
out["linked"] = conn.get_linked_models("compat")
out["models"] = conn.get_all_models()
out["models_verbose"] = conn.get_all_models(verbose=True)
out["app_info"] = conn.get_app_info("compat")
deadline = time.monotonic() + 30
while True:
    answer = requests.post("http://%s/compat/predict" % query_addr, json={"input": [1.0, 2.0]}).json()
    if not answer["default"] or time.monotonic() > deadline:
        break
    time.sleep(0.05)
out["answer"] = answer
try:
    conn.register_application("compat", "doubles", "-1.0", 1000000)
except Exception as e:
    out["duplicate_error"] = e.msg
conn.unregister_application("compat")
out["apps_after"] = conn.get_all_apps()
print(json.dumps(out))
"""


def test_clipper_admin_import_paths() -> None:
    import clipper_admin
    from clipper_admin import ClipperException, UnconnectedException, deployers
    from clipper_admin.container_manager import (
        CLIPPER_INTERNAL_QUERY_PORT,
        CONTAINERLESS_MODEL_IMAGE,
        ContainerManager,
    )
    from clipper_admin.deployers.python import create_endpoint, deploy_python_closure
    from clipper_admin.exceptions import ClipperException as SameException

    assert clipper_admin.ClipperConnection is ClipperConnection
    assert clipper_admin.LocalContainerManager is LocalContainerManager
    assert SameException is ClipperException and issubclass(UnconnectedException, ClipperException)
    assert issubclass(LocalContainerManager, ContainerManager)
    assert (CLIPPER_INTERNAL_QUERY_PORT, CONTAINERLESS_MODEL_IMAGE) == (1337, "NO_CONTAINER")
    assert deployers.python.create_endpoint is create_endpoint and callable(deploy_python_closure)
    assert clipper_admin.DockerContainerManager.__name__ == "DockerContainerManager"


def clipper_admin_041_python(cache_dir: Path) -> Path:
    """A virtualenv holding the real clipper_admin 0.4.1 (no deps) plus what its import needs; cached."""
    python = cache_dir / "venv" / "bin" / "python"
    if (
        python.exists()
        and subprocess.run([python, "-c", "import clipper_admin"], capture_output=True).returncode == 0
    ):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", cache_dir / "venv"], check=True)
    for args in (["--no-deps", "clipper_admin==0.4.1"], IMPORT_TIME_DEPS):
        done = subprocess.run([python, "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot install clipper_admin 0.4.1 from the package index: {done.stderr[-500:]}")
    return python


@pytest.mark.slow
def test_real_clipper_admin_041_drives_our_cluster(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    python = clipper_admin_041_python(Path(pytestconfig.cache.mkdir("clipper-admin-0.4.1")))
    from tests.admin.conftest import make_manager

    # Clipper 0.4's client sends no token: the operator turns admin auth off, explicitly.
    manager = make_manager(tmp_path / "state", admin_auth=False)
    conn = ClipperConnection(manager)
    conn.start_clipper()
    try:
        model_dir = tmp_path / "model"
        save_closure(lambda xs: [str(sum(x) * 10) for x in xs], model_dir)
        manager.deploy_model("compat-model", "1", "doubles", str(model_dir), num_replicas=1)
        done = subprocess.run(
            [python, "-c", COMPAT_SCRIPT, manager.get_query_addr(), manager.get_admin_addr(), str(model_dir)],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        manager.stop_all()
    assert out["apps"] == ["compat"]
    assert out["current_after_v2"] == "2" and out["current"] == "1"
    assert out["linked"] == ["compat-model"]
    assert sorted(out["models"]) == ["compat-model:1", "compat-model:2"]
    v1 = next(m for m in out["models_verbose"] if m["model_version"] == "1")
    assert v1["is_current_version"] and v1["labels"] == ["a"] and v1["container_name"] == str(model_dir)
    assert out["app_info"]["linked_models"] == ["compat-model"] and out["app_info"]["input_type"] == "doubles"
    assert out["answer"]["default"] is False and out["answer"]["output"] == 30.0
    assert out["duplicate_error"].startswith("Received error status code: 400")
    assert out["apps_after"] == []
