"""save_closure/load_closure round trips, version checks and import hints (reference §7.7, §9 #6)."""

from __future__ import annotations

import json
import sys
import textwrap

import cloudpickle
import numpy as np
import pytest

from clipper.errors import ClipperError
from clipper.runtime.closure import import_function, load_closure, save_closure


@pytest.fixture(autouse=True)
def restore_sys_path(monkeypatch):
    """load_closure prepends `<dir>/modules` to sys.path; keep each test's change to itself."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in ("clipper_test_featurize", "clipper_test_absent"):
        sys.modules.pop(name, None)


def test_round_trip_captures_numpy_array_and_local_variable(tmp_path):
    weights = np.array([0.5, 2.0])
    offset = 10.0

    def predict(inputs):
        return [str(x) for x in inputs @ weights + offset]

    path = save_closure(predict, tmp_path / "model")
    assert path == tmp_path / "model" / "func.pkl"
    weights[:] = 0  # the pickle holds a copy taken at save time
    loaded = load_closure(tmp_path / "model")
    assert loaded(np.array([[2.0, 1.0], [0.0, 0.0]])) == ["13.0", "10.0"]


def test_metadata_records_python_and_cloudpickle_versions(tmp_path):
    save_closure(len, tmp_path)
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata == {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "cloudpickle": cloudpickle.__version__,
    }


def test_python_minor_mismatch_says_what_to_do(tmp_path):
    save_closure(len, tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({"python": "3.6", "cloudpickle": "0.5.3"}))
    with pytest.raises(ClipperError) as e:
        load_closure(tmp_path)
    assert "saved by Python 3.6 with cloudpickle 0.5.3" in e.value.msg
    assert "Redeploy" in e.value.msg and "base image with Python 3.6" in e.value.msg


def test_cloudpickle_major_mismatch_is_refused(tmp_path):
    save_closure(len, tmp_path)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    (tmp_path / "metadata.json").write_text(json.dumps({"python": python, "cloudpickle": "0.5.3"}))
    with pytest.raises(ClipperError, match=r"cloudpickle 0\.5\.3"):
        load_closure(tmp_path)


def test_clipper_04_pickle_without_metadata_still_loads(tmp_path):
    (tmp_path / "func.pkl").write_bytes(cloudpickle.dumps(lambda xs: [str(x) for x in xs], protocol=2))
    assert load_closure(tmp_path)([1, 2]) == ["1", "2"]


def test_missing_function_file(tmp_path):
    with pytest.raises(ClipperError, match="No model function"):
        load_closure(tmp_path)


def _write_module(directory, name, body):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(body))


def test_modules_directory_is_importable(tmp_path):
    """A function from a module is pickled by reference; `<dir>/modules` makes it importable at load."""
    source = tmp_path / "src"
    _write_module(source, "clipper_test_featurize", "def predict(xs):\n    return ['ok'] * len(xs)\n")
    sys.path.insert(0, str(source))
    import clipper_test_featurize

    save_closure(clipper_test_featurize.predict, tmp_path / "model")
    sys.path.remove(str(source))
    del sys.modules["clipper_test_featurize"]
    _write_module(
        tmp_path / "model" / "modules",
        "clipper_test_featurize",
        (source / "clipper_test_featurize.py").read_text(),
    )
    assert load_closure(tmp_path / "model")([1]) == ["ok"]


def test_missing_module_hints_at_pkgs_to_install(tmp_path):
    source = tmp_path / "src"
    _write_module(source, "clipper_test_absent", "def predict(xs):\n    return xs\n")
    sys.path.insert(0, str(source))
    import clipper_test_absent

    save_closure(clipper_test_absent.predict, tmp_path / "model")
    sys.path.remove(str(source))
    del sys.modules["clipper_test_absent"]
    with pytest.raises(ClipperError) as e:
        load_closure(tmp_path / "model")
    assert "'clipper_test_absent'" in e.value.msg and "pkgs_to_install" in e.value.msg


def test_corrupt_pickle_names_the_versions(tmp_path):
    save_closure(len, tmp_path)
    (tmp_path / "func.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ClipperError, match=r"Cannot unpickle .* Python .* cloudpickle"):
        load_closure(tmp_path)


def test_import_function():
    assert import_function("json:dumps")([1]) == "[1]"
    with pytest.raises(ClipperError, match="must look like"):
        import_function("json")
    with pytest.raises(ClipperError, match="has no function 'nope'"):
        import_function("json:nope")
    with pytest.raises(ClipperError, match="Cannot import 'clipper_no_such_module'"):
        import_function("clipper_no_such_module:f")
