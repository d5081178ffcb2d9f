"""The query path recovers from one bad event: a slow batch, a stuck replica, a rogue peer, a churn of links.

Each test drives a real frontend process, real runtimes and raw ZMTP peers on real sockets.
"""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor

from clipper.rpc import codec, zmtp
from clipper.types import InputType
from tests.conftest import wait_until
from tests.frontends.conftest import QueryCluster


class RawPeer:
    """A container speaking ZMTP and RPC v3 by hand, so a test can make it misbehave."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(zmtp.greeting(as_server=False) + zmtp.ready(b"DEALER"))

    def register(self, model: str, version: str = "1") -> None:
        self.send(codec.encode_new_container(model, version, InputType.DOUBLES))

    def send(self, frames: list[bytes]) -> None:
        self.sock.sendall(zmtp.encode(frames))

    def close(self) -> None:
        self.sock.close()


def _batches_answered(cluster: QueryCluster, model: str) -> float:
    pattern = rf'clipper_model_batch_latency_seconds_count\{{model="{model}",version="1"\}} (\S+)'
    found = re.search(pattern, cluster.metrics())
    return float(found.group(1)) if found else 0.0


def test_one_slow_batch_does_not_stop_the_model_for_good(cluster: QueryCluster):
    """A first batch 20 SLOs long must not leave a latency estimate that skips every later query."""
    cluster.model("m")
    cluster.container("m", "slow_once", TEST_SLOW_S="2")
    cluster.app("a", model="m", slo_micros=100_000)
    assert cluster.post("a", {"input": [1.0]}).json()["default"] is True  # the slow batch misses its SLO
    wait_until(lambda: _batches_answered(cluster, "m") >= 1, what="the slow batch to come back")
    replies = [cluster.post("a", {"input": [float(i)]}).json() for i in range(2, 40)]
    served = [r for r in replies if not r["default"]]
    assert served, "every query after one slow batch got the default output"
    assert all(not r["default"] for r in replies[-10:])


def test_a_query_stuck_past_its_deadline_does_not_hold_later_identical_queries(cluster: QueryCluster):
    cluster.model("m")
    mark = cluster.tmp / "stuck"
    cluster.container("m", "slow", TEST_SLOW_S="30", TEST_MARK_FILE=str(mark))
    cluster.app("a", model="m", slo_micros=300_000)
    assert cluster.post("a", {"input": [7.0]}).json()["default"] is True
    wait_until(mark.exists, what="the slow replica to hold the query")
    cluster.container("m", "sum_inputs")
    reply = cluster.post("a", {"input": [7.0]}).json()
    assert reply["default"] is False and reply["output"] == 7.0


def test_idle_replicas_take_turns(cluster: QueryCluster):
    """The longest-idle replica gets the next batch, so a newcomer cannot take all the work."""
    cluster.model("m")
    cluster.container("m", "pid")
    cluster.container("m", "pid")
    cluster.app("a", model="m")
    pids = {cluster.post("a", {"input": [float(i)]}).json()["output"] for i in range(10)}
    assert len(pids) == 2


def test_an_answer_from_another_replica_is_dropped_and_counted(cluster: QueryCluster):
    cluster.model("m")
    mark = cluster.tmp / "holding"
    cluster.container("m", "slow", TEST_SLOW_S="2", TEST_MARK_FILE=str(mark))
    cluster.app("a", model="m", slo_micros=20_000_000)
    rogue = RawPeer(cluster.rpc_port)
    rogue.register("evil")
    wait_until(lambda: cluster.replicas("evil", "1") == 1, what="the rogue to register")
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(cluster.post, "a", {"input": [1.0, 2.0]})
        wait_until(mark.exists, what="the real replica to hold the batch")
        for msg_id in range(64):  # message ids are small counters: guess them all
            rogue.send(codec.encode_response(msg_id, [b"666"]))
        reply = future.result().json()
    assert reply["default"] is False and reply["output"] == 2  # the real replica's answer (len of input)
    # The real replica is idle again and serves the next query.
    assert cluster.post("a", {"input": [3.0]}).json()["output"] == 1
    stray = re.search(r'clipper_rpc_stray_answers_total\{model="evil",version="1"\} (\S+)', cluster.metrics())
    assert stray is not None and float(stray.group(1)) > 0
    rogue.close()


def test_a_thousand_containers_leaving_together_leave_no_record(cluster: QueryCluster):
    cluster.model("m")
    peers = []
    for _ in range(1000):
        peer = RawPeer(cluster.rpc_port)
        peer.register("m")  # at once, as a container does: a connection must register within 5 s
        peers.append(peer)
    wait_until(lambda: cluster.replicas("m", "1") == 1000, timeout_s=60, what="1000 registrations")
    for peer in peers:
        peer.close()
    wait_until(lambda: cluster.replicas("m", "1") == 0, timeout_s=60, what="every record to be removed")
    log = b"".join(p.read_bytes() for p in cluster.tmp.glob("frontend-*.log")).decode(errors="replace")
    assert "Task exception was never retrieved" not in log
    assert cluster.frontend.poll() is None
