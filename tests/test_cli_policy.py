"""`clipper policy` and the policy column of `clipper apps`, through CliRunner on a real local cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from clipper.admin.connection import ClipperConnection
from clipper.admin.managers.local import LocalContainerManager
from clipper.cli import cli
from tests.conftest import free_port

Run = Callable[..., Result]


@pytest.fixture
def clipper(tmp_path: Path) -> Iterator[Run]:
    """Run `clipper --cluster policy-test --state-dir <tmp> ARGS` on a started cluster; stop it afterwards."""
    runner = CliRunner()
    base = ["--cluster", "policy-test", "--state-dir", str(tmp_path / "state")]

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli, [*base, *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    ports = [str(free_port()) for _ in range(4)]
    run(
        "start", "--query-port", ports[0], "--management-port", ports[1], "--rpc-port", ports[2],
        "--redis-port", ports[3],
    )  # fmt: skip
    try:
        yield run
    finally:
        runner.invoke(cli, [*base, "stop"])


def one_error_line(result: Result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_help() -> None:
    result = CliRunner().invoke(cli, ["policy", "--help"])
    assert result.exit_code == 0 and "--param KEY=VALUE" in result.output and "split" in result.output


def test_policy_shows_and_sets_and_apps_shows_weights(clipper: Run, tmp_path: Path) -> None:
    conn = ClipperConnection(LocalContainerManager(cluster_name="policy-test", state_dir=tmp_path / "state"))
    conn.connect()
    conn.register_application("ab", "doubles", "-1", 100_000)
    for name in ("a", "b"):
        conn.register_model(name, "1", "doubles")
    conn.link_model_to_app("ab", "a")

    shown = clipper("policy", "ab").output.splitlines()
    assert shown == ["ab: policy default", "  params: {}", "  a: weight 1.000"]
    assert "already linked" in one_error_line(clipper("link", "ab", "b", code=1))

    assert "policy shadow" in clipper("policy", "ab", "shadow", "--param", "primary=a").output
    clipper("link", "ab", "b")
    split = clipper("policy", "ab", "split", "--param", "weights.a=9", "--param", "weights.b=1").output
    assert split.splitlines() == [
        "ab: policy split",
        '  params: {"weights": {"a": 0.9, "b": 0.1}}',
        "  a: weight 0.900",
        "  b: weight 0.100",
    ]
    apps = clipper("apps").output
    assert "split" in apps and "a 0.900" in apps and "b 0.100" in apps

    assert "gamma" in one_error_line(clipper("policy", "ab", "exp3", "--param", "gamma=2", code=1))
    assert "needs a POLICY" in one_error_line(clipper("policy", "ab", "--param", "gamma=0.2", code=1))
    assert "KEY=VALUE" in one_error_line(clipper("policy", "ab", "exp3", "--param", "gamma", code=1))
    unlink = one_error_line(clipper("link", "ab", "a", "--unlink", code=1))
    assert "409" in unlink and "change the policy first" in unlink
    assert "unlink all but one" in one_error_line(clipper("policy", "ab", "default", code=1))

    clipper("policy", "ab", "exp3", "--param", "gamma=0.2", "--param", "per_user=true")
    assert conn.get_app_policy("ab")["params"]["per_user"] is True
    info = conn.get_app_info("ab")
    assert info is not None and (info["policy"], info["linked_models"]) == ("exp3", ["a", "b"])
