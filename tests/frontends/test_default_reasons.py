"""Default answers are counted by why they were given, so a dashboard can tell a missed SLO from a model
that fails or an app with no model."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.conftest import wait_until
from tests.frontends.conftest import QueryCluster


def _defaults(metrics_text: str, app: str) -> dict[str, float]:
    pattern = rf'clipper_app_default_predictions_total\{{app="{app}",reason="([a-z_]+)"\}} ([0-9.e+]+)'
    return {reason: float(value) for reason, value in re.findall(pattern, metrics_text)}


def test_defaults_are_counted_by_reason(make_cluster: Callable[..., QueryCluster]) -> None:
    cluster = make_cluster()
    cluster.app("nomodel")
    cluster.model("broken")
    cluster.app("failing", model="broken")
    cluster.container("broken", "fail")
    cluster.model("slow")
    cluster.app("late", model="slow", slo_micros=20_000)
    cluster.container("slow", "slow", TEST_SLOW_S="0.5")

    assert cluster.post("nomodel", {"input": [1.0]}).json()["default"] is True
    assert cluster.post("failing", {"input_batch": [[1.0], [2.0]]}).json()["batch_predictions"][0]["default"]
    wait_until(lambda: cluster.post("late", {"input": [3.0]}).json()["default"] is True, what="an SLO miss")

    text = cluster.metrics()
    assert _defaults(text, "nomodel") == {"no_model": 1.0}
    assert _defaults(text, "failing") == {"model_error": 2.0}
    assert set(_defaults(text, "late")) == {"slo"}
