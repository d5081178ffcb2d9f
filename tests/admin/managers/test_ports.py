"""Ports never move without a word: a taken port is an error naming its holder; TIME_WAIT is not taken."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import requests

from clipper.admin import ClipperConnection, LocalContainerManager
from clipper.errors import ClusterError
from tests.admin.conftest import make_manager


def test_a_taken_port_is_an_error_that_names_its_holder(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        manager = make_manager(tmp_path / "state", clipper_query_port=port)
        with pytest.raises(ClusterError, match=rf"query port {port} is in use by pid {os.getpid()}"):
            ClipperConnection(manager).start_clipper()
    assert manager.live_records() == []


def test_a_restart_keeps_its_ports_while_a_client_still_holds_a_connection(tmp_path: Path) -> None:
    """The server side of a closed keep-alive connection sits in TIME_WAIT; the port is still free to bind."""
    manager = make_manager(tmp_path / "state", "ports")
    conn = ClipperConnection(manager)
    conn.start_clipper()
    query_port = manager.get_query_addr()
    ports = _ports_of(manager)
    client = requests.Session()
    assert client.get(f"http://{query_port}/health", timeout=10).status_code == 200  # kept alive
    conn.stop_all()
    again = make_manager(tmp_path / "state", "ports", **ports)
    ClipperConnection(again).start_clipper()
    try:
        assert again.get_query_addr() == query_port
    finally:
        again.stop_all(remove_state=True)
        client.close()


def test_port_zero_leaves_the_choice_to_clipper(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manager = make_manager(tmp_path / "state", clipper_query_port=0)
    ClipperConnection(manager).start_clipper()
    try:
        port = int(manager.get_query_addr().rsplit(":", 1)[1])
        assert port != 0 and f"using {port}" in caplog.text
    finally:
        manager.stop_all(remove_state=True)


def _ports_of(manager: LocalContainerManager) -> dict[str, int]:
    info = manager.info
    assert info is not None
    return {
        "clipper_query_port": info.query_port,
        "clipper_management_port": info.management_port,
        "clipper_rpc_port": info.rpc_port,
        "redis_port": info.redis_port,
    }
