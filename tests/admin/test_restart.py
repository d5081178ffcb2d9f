"""A stopped local cluster starts again serving what it served, or from nothing when its state is removed."""

from __future__ import annotations

from pathlib import Path

import requests

from clipper.admin import ClipperConnection
from clipper.admin.deployers.python import create_endpoint
from tests.admin.conftest import make_manager


def _predict(conn: ClipperConnection, app: str) -> dict:
    url = f"http://{conn.get_query_addr()}/{app}/predict"
    return requests.post(url, json={"input": [1.0, 2.0]}, timeout=30).json()


def test_a_restart_resumes_serving_and_remove_state_starts_from_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = ClipperConnection(make_manager(state, "restart"))
    first.start_clipper()
    try:
        create_endpoint(first, "resume", "doubles", lambda xs: [str(sum(x)) for x in xs], num_replicas=2)
        first.wait_for_model("resume", "1", num_replicas=2)
        assert _predict(first, "resume")["output"] == 3.0
    finally:
        first.stop_all()

    again = ClipperConnection(make_manager(state, "restart"))
    again.start_clipper()  # returns once the resumed replicas are connected
    try:
        assert again.cm.resumed_replicas() == {("resume", "1"): 2}
        assert again.get_num_replicas("resume", "1") == 2
        answer = _predict(again, "resume")
        assert answer["default"] is False and answer["output"] == 3.0
    finally:
        again.stop_all(remove_state=True)
    assert not state.exists()

    fresh = ClipperConnection(make_manager(state, "restart"))
    fresh.start_clipper()
    try:
        assert fresh.get_all_apps() == [] and fresh.cm.resumed_replicas() == {}
    finally:
        fresh.stop_all(remove_state=True)
