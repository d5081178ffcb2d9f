"""Run Clipper 0.4's own integration tests against this implementation and print the pass count.

    scripts/run-clipper-integration-tests.sh CLIPPER_CHECKOUT [local|docker]

Runs, from a Clipper checkout, `integration-tests/clipper_admin_tests.py` (both classes, in its own test
order), `many_apps_many_models.py` and `multi_tenancy_test.py` (as scripts, each one test), with their
test bodies unchanged. Nothing is fetched at run time. What the runner changes, and why each is faithful:

1. The files are copied to a temporary directory and run from there, so their
   `sys.path.insert(0, "<dir>/../clipper_admin")` finds no Clipper package and `import clipper_admin`
   imports ours (the thing under test), not Clipper's.
2. `CLIPPER_HOME` is a fresh temporary directory: each run starts on a clean host, as Clipper's CI did.
   Our clusters keep their state on `stop_all()`; a fresh home keeps one run's state out of the next.
3. Manager `local` only: `test_utils.DockerContainerManager`, Clipper's connection factory, builds our
   LocalContainerManager with the same cluster name and ports (`fluentd_port` has nothing to do locally),
   and `test_utils.get_docker_client`, which the tests use only to count a cluster's containers of an image
   (`ancestor` and cluster `label` filters), lists the cluster's replica processes of that image instead.
   With `docker` both stay as they are: our DockerContainerManager runs real containers.
4. In `clipper_admin_tests.py` only, `import sys` gives a view of `sys` whose `version_info` says 3.7: the
   two closure tests pick Clipper's closure image name by the Python that runs them and know only 2.7 and
   3.5-3.7. All of Clipper's closure names stand for our one closure image (which runs this Python), so the
   name they pick does not change what they check; everything else in `sys` is the real module.
"""

from __future__ import annotations

import argparse
import builtins
import os
import runpy
import shutil
import sys
import tempfile
import types
import unittest
from pathlib import Path
from typing import Any, NamedTuple

FILES = ("clipper_admin_tests.py", "many_apps_many_models.py", "multi_tenancy_test.py")
CLOSURE_TEST_PYTHON = (3, 7, 0, "final", 0)


class _VersionInfo(NamedTuple):
    major: int
    minor: int
    micro: int
    releaselevel: str
    serial: int


class _SysView(types.ModuleType):
    """`sys` with Clipper's closure tests' Python version (point 4 above); all else is the real `sys`."""

    def __init__(self) -> None:
        super().__init__("sys")
        self.version_info = _VersionInfo(*CLOSURE_TEST_PYTHON)

    def __getattr__(self, name: str) -> Any:
        return getattr(sys, name)


def _builtins_with_sys_view() -> dict[str, Any]:
    view = _SysView()
    real_import = builtins.__import__

    def importing(name: str, *args: Any, **kwargs: Any) -> Any:
        return view if name == "sys" else real_import(name, *args, **kwargs)

    return {**vars(builtins), "__import__": importing}


class _LocalReplicas:
    """Answers `containers.list(filters=...)` as Docker would for the local manager's replica processes."""

    def __init__(self) -> None:
        self.containers = self

    def list(self, filters: dict[str, Any] | None = None, **_: Any) -> list[types.SimpleNamespace]:
        from clipper.admin.clipper_images import NOOP_PREDICT_MODULE, ImageKind, image_kind
        from clipper.admin.managers.base import CLIPPER_DOCKER_LABEL
        from clipper.admin.managers.process import ProcessTable, cluster_state_dir, is_alive

        filters = filters or {}
        labels = filters.get("label", [])
        labels = [labels] if isinstance(labels, str) else labels
        clusters = [v for k, _, v in (lb.partition("=") for lb in labels) if k == CLIPPER_DOCKER_LABEL]
        wanted = image_kind(filters["ancestor"]) if "ancestor" in filters else None
        found = []
        for cluster in clusters:
            for rec in ProcessTable(cluster_state_dir(cluster)).records():
                if rec.model_name is None or not is_alive(rec):
                    continue
                noop = rec.env.get("CLIPPER_PREDICT_MODULE") == NOOP_PREDICT_MODULE
                kind = ImageKind.NOOP if noop else ImageKind.CLOSURE
                if "ancestor" not in filters or kind is wanted:
                    found.append(types.SimpleNamespace(name=rec.role, labels={CLIPPER_DOCKER_LABEL: cluster}))
        return found


def _local_manager(
    cluster_name: str = "default-cluster",
    clipper_query_port: int = 1337,
    clipper_management_port: int = 1338,
    clipper_rpc_port: int = 7000,
    redis_port: int = 6379,
    prometheus_port: int = 9090,
    fluentd_port: int = 24224,
    use_centralized_log: bool = False,
) -> Any:
    """Clipper's DockerContainerManager arguments as test_utils passes them, for our local manager."""
    from clipper_admin import LocalContainerManager

    if use_centralized_log:
        raise ValueError("use_centralized_log: the local manager has no fluentd")
    return LocalContainerManager(
        cluster_name=cluster_name,
        clipper_query_port=clipper_query_port,
        clipper_management_port=clipper_management_port,
        clipper_rpc_port=clipper_rpc_port,
        redis_port=redis_port,
        prometheus_port=prometheus_port,
    )


def _patch_test_utils(manager: str) -> None:
    import test_utils  # type: ignore[import-not-found]  # Clipper's; imported once, so the test files' `from test_utils import` see this

    if manager == "local":
        test_utils.DockerContainerManager = _local_manager
        test_utils.get_docker_client = _LocalReplicas


def _run_admin_tests(path: Path) -> tuple[int, int]:
    """Clipper's two test classes, in the file's own order (all tests, not stopping at the first failure)."""
    module = runpy.run_path(
        str(path), init_globals={"__builtins__": _builtins_with_sys_view()}, run_name="clipper_admin_tests"
    )
    suite = unittest.TestSuite()
    suite.addTests(module["ClipperManagerTestCaseShort"](t) for t in module["SHORT_TEST_ORDERING"])
    suite.addTests(module["ClipperManagerTestCaseLong"](t) for t in module["LONG_TEST_ORDERING"])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors)
    return result.testsRun - failed, result.testsRun


def _run_script(path: Path) -> tuple[int, int]:
    """A script that is one test: it passes when its `__main__` ends without a non-zero exit."""
    saved = sys.argv
    sys.argv = [str(path)]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as e:
        ok = e.code in (None, 0)
    except Exception as e:  # noqa: BLE001  # a failing script is a result to count, not a crash
        print(f"{path.name} raised {e!r}", file=sys.stderr)
        ok = False
    else:
        ok = True
    finally:
        sys.argv = saved
    print(f"{path.name}: {'PASS' if ok else 'FAIL'}", flush=True)
    return int(ok), 1


def _remove_kept_volumes(home: Path) -> None:
    """Clipper's tests stop clusters without `remove_state`, so our Docker manager keeps their Redis
    volumes; this run's state goes with its temporary CLIPPER_HOME, so its volumes go too."""
    import docker

    from clipper.admin.managers.base import CLIPPER_DOCKER_LABEL
    from clipper.admin.managers.docker import redis_volume_name

    client = docker.from_env()
    for volume in client.volumes.list(filters={"label": CLIPPER_DOCKER_LABEL}):
        cluster = (volume.attrs.get("Labels") or {}).get(CLIPPER_DOCKER_LABEL, "")
        if volume.name == redis_volume_name(cluster, (home / cluster).absolute()):
            volume.remove(force=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkout", type=Path, help="a Clipper checkout (has integration-tests/)")
    parser.add_argument("manager", nargs="?", choices=("local", "docker"), default="local")
    parser.add_argument("--only", choices=FILES, action="append", help="run only this file (repeatable)")
    args = parser.parse_args()
    source = args.checkout / "integration-tests"
    if not (source / "test_utils.py").is_file():
        parser.error(f"{source} has no test_utils.py; pass the root of a Clipper checkout")
    work = Path(tempfile.mkdtemp(prefix="clipper-it-"))
    tests = work / "integration-tests"
    shutil.copytree(source, tests)
    os.environ["CLIPPER_HOME"] = str(work / "home")
    os.chdir(tests)
    sys.path.insert(0, str(tests))
    _patch_test_utils(args.manager)
    passed = total = 0
    for name in args.only or FILES:
        run = _run_admin_tests if name == "clipper_admin_tests.py" else _run_script
        p, t = run(tests / name)
        print(f"== {name}: {p}/{t} passed", flush=True)
        passed, total = passed + p, total + t
    print(f"== {args.manager}: {passed}/{total} passed", flush=True)
    if args.manager == "docker":
        _remove_kept_volumes(work / "home" / "docker")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
