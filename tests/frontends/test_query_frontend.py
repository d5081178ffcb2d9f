"""The query path end to end: real Redis, a real frontend process, real runtimes over real ZeroMQ."""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from clipper.config.store import ConfigStore
from clipper.schema import App
from tests.conftest import wait_until
from tests.frontends.conftest import TESTS_DIR, QueryCluster


@pytest.mark.parametrize(
    ("input_type", "single", "batch", "expected"),
    [
        ("doubles", [1.0, 2.5], [[1, 2], [3.5]], ["3.5", "3.0", "3.5"]),
        ("floats", [0.5, 0.25], [[1.0], [2.0, 2.0]], ["0.75", "1.0", "4.0"]),
        ("integers", [1, 2, 3], [[4], [5, 6]], ["6", "4", "11"]),
        ("strings", "hello", ["a", "abc"], ["5", "1", "3"]),
        ("bytes", base64.b64encode(b"xyz").decode(), [base64.b64encode(b"ab").decode()], ["363", "195"]),
    ],
)
def test_predict_each_input_type(cluster: QueryCluster, input_type, single, batch, expected):
    cluster.model("m", input_type=input_type)
    cluster.container("m", "sum_inputs", input_type=input_type)
    cluster.app("a", input_type, "m")
    reply = cluster.post("a", {"input": single}).json()
    assert reply["default"] is False
    assert str(reply["output"]) == expected[0]
    batch_reply = cluster.post("a", {"input_batch": batch}).json()
    assert [str(p["output"]) for p in batch_reply["batch_predictions"]] == expected[1:]
    assert all(p["default"] is False for p in batch_reply["batch_predictions"])


def test_app_without_a_linked_model_answers_its_default(cluster: QueryCluster):
    cluster.app("lonely", default="42")
    reply = cluster.post("lonely", {"input": [1.0]}).json()
    assert reply == {
        "query_id": reply["query_id"],
        "output": 42,
        "default": True,
        "default_explanation": "No connected models found for query",
    }


def test_unknown_app_is_a_json_404(cluster: QueryCluster):
    response = cluster.post("nope", {"input": [1.0]})
    assert response.status_code == 404
    assert "nope" in response.json()["cause"]


def test_health_answers_get_and_head_and_other_routes_are_json_errors(cluster: QueryCluster):
    health = requests.get(f"{cluster.url}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    head = requests.head(f"{cluster.url}/health", timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(health.content)
    update = requests.post(f"{cluster.url}/a/update", json={}, timeout=5)  # feedback: test_selection.py
    assert update.status_code == 404 and update.json()["cause"] == "No application named 'a'"
    missing = requests.get(f"{cluster.url}/a/b/c", timeout=5)
    assert missing.status_code == 404 and missing.json()["cause"] == "No route for GET /a/b/c"


def test_bad_input_is_a_400_naming_the_problem(cluster: QueryCluster):
    cluster.app("a")
    response = cluster.post("a", {"input": "not an array"})
    assert response.status_code == 400
    assert response.json()["error"] == "Json error"
    assert "input expected type Array" in response.json()["cause"]
    response = cluster.post("a", {"input": [1.0, True]})
    assert response.status_code == 400
    assert "Boolean" in response.json()["cause"]


def test_a_model_that_raises_answers_with_the_error_and_keeps_serving(cluster: QueryCluster):
    cluster.model("bad")
    cluster.container("bad", "fail")
    cluster.app("a", model="bad")
    for _ in range(2):  # the container survives the first failure
        reply = cluster.post("a", {"input": [1.0]}).json()
        assert reply["default"] is True
        assert "this model always fails" in reply["default_explanation"]


def test_a_model_returning_dicts_answers_json_objects(cluster: QueryCluster):
    cluster.model("m")
    cluster.container("m", "labelled")
    cluster.app("a", model="m")
    assert cluster.post("a", {"input": [2.0]}).json()["output"] == {"label": "big", "ok": True}


def test_outputs_are_embedded_as_clipper_embeds_them(cluster: QueryCluster):
    """An output that parses as JSON is embedded as JSON; anything else, the empty string too, as a string."""
    cluster.model("m", input_type="strings")
    cluster.container("m", "echo_strings", input_type="strings")
    cluster.model("e")
    cluster.container("e", "empty")
    cluster.app("echo", "strings", "m")
    cluster.app("nothing", model="e")
    assert cluster.post("echo", {"input": "[1, 2]"}).json()["output"] == [1, 2]
    assert cluster.post("echo", {"input": "cat"}).json()["output"] == "cat"
    assert cluster.post("nothing", {"input": [1.0]}).json()["output"] == ""


def test_a_model_returning_the_wrong_number_of_outputs_is_an_error(cluster: QueryCluster):
    cluster.model("bad")
    cluster.container("bad", "wrong_count")
    cluster.app("a", model="bad")
    reply = cluster.post("a", {"input": [1.0]}).json()
    assert reply["default"] is True
    assert "2 outputs for 1 inputs" in reply["default_explanation"]


def test_a_slow_model_is_answered_with_the_default_within_the_slo(cluster: QueryCluster):
    cluster.model("slow")
    cluster.container("slow", "slow", TEST_SLOW_S="5")
    cluster.app("a", model="slow", slo_micros=100_000)
    reply = cluster.post("a", {"input": [1.0]}).json()
    assert reply["default"] is True
    assert (
        reply["default_explanation"]
        == "Failed to retrieve a prediction response within the specified latency SLO"
    )


def test_container_killed_mid_batch_every_query_is_answered_and_a_restart_serves_again(cluster: QueryCluster):
    cluster.model("m")
    victim = cluster.container("m", "slow", TEST_SLOW_S="30")
    cluster.app("a", model="m", slo_micros=60_000_000)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cluster.post, "a", {"input": [float(i)]}, 60) for i in range(8)]
        # The first batch (AIMD starts at 1) is in the replica's hands, the other seven wait for it.
        wait_until(lambda: _queued(cluster) == 7, what="queries to queue")
        victim.send_signal(signal.SIGKILL)
        replies = [f.result().json() for f in futures]
    # Answered at once with a reason, not after the 60 s SLO.
    assert all(r["default"] is True for r in replies)
    assert all("disconnected" in r["default_explanation"] for r in replies)
    cluster.container("m", "sum_inputs")
    assert cluster.post("a", {"input": [2.0, 3.0]}).json()["output"] == 5.0


def test_queries_in_flight_on_a_killed_replica_are_retried_on_another(cluster: QueryCluster):
    cluster.model("m")
    mark = cluster.tmp / "batch-started"
    victim = cluster.container("m", "slow", TEST_SLOW_S="30", TEST_MARK_FILE=str(mark))
    cluster.app("a", model="m", slo_micros=60_000_000)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(cluster.post, "a", {"input": [1.0, 2.0]}, 60)
        wait_until(mark.exists, what="the slow replica to start the batch")
        cluster.container("m", "sum_inputs")
        victim.send_signal(signal.SIGKILL)
        reply = future.result().json()
    assert reply["default"] is False
    assert reply["output"] == 3.0


def _queued(cluster: QueryCluster) -> float:
    found = re.search(r'clipper_model_queue_length\{model="m",version="1"\} (\S+)', cluster.metrics())
    return float(found.group(1)) if found else -1.0


def test_identical_queries_are_served_from_the_cache(cluster: QueryCluster):
    cluster.model("m")
    cluster.container("m", "count_calls")
    cluster.app("a", model="m")
    first = cluster.post("a", {"input": [7.0]}).json()["output"]
    assert cluster.post("a", {"input": [7.0]}).json()["output"] == first
    assert cluster.post("a", {"input": [8.0]}).json()["output"] != first
    assert re.search(r'clipper_cache_lookups_total\{[^}]*result="hit"[^}]*\} 1\.0', cluster.metrics())


def test_cache_can_be_turned_off(make_cluster):
    cluster = make_cluster(CLIPPER_CACHE_SIZE_BYTES="0")
    cluster.model("m")
    cluster.container("m", "count_calls")
    cluster.app("a", model="m")
    first = cluster.post("a", {"input": [7.0]}).json()["output"]
    assert cluster.post("a", {"input": [7.0]}).json()["output"] != first


def test_concurrent_load_forms_batches_bigger_than_one(make_cluster):
    cluster = make_cluster(CLIPPER_CACHE_SIZE_BYTES="0")
    cluster.model("m")
    cluster.container("m", "batch_size")
    cluster.app("a", model="m")
    with ThreadPoolExecutor(16) as pool:
        sizes = list(
            pool.map(lambda i: cluster.post("a", {"input": [float(i)]}).json()["output"], range(400))
        )
    assert max(sizes) > 1


def test_version_switch_moves_traffic_and_a_request_may_pin_an_older_version(cluster: QueryCluster):
    cluster.model("m", "1")
    cluster.container("m", "pid", version="1")
    cluster.model("m", "2")
    cluster.container("m", "pid", version="2")
    cluster.app("a", model="m")
    v2 = cluster.post("a", {"input": [1.0]}).json()["output"]
    v1 = cluster.post("a", {"input": [1.0], "version": "1"}).json()["output"]
    assert v1 != v2
    cluster.set_version("m", "1")
    wait_until(lambda: cluster.post("a", {"input": [2.0]}).json()["output"] == v1, what="the switch to v1")
    response = cluster.post("a", {"input": [1.0], "version": "9"})
    assert response.status_code == 400
    assert response.json()["cause"] == "Requested version: 9 does not exist for model: m"


def test_past_the_queue_bound_the_frontend_answers_503_at_once(make_cluster):
    cluster = make_cluster(CLIPPER_QUEUE_MAX_ENTRIES="2", CLIPPER_CACHE_SIZE_BYTES="0")
    cluster.model("m")
    cluster.container("m", "slow", TEST_SLOW_S="0.5")
    cluster.app("a", model="m", slo_micros=20_000_000)
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda i: cluster.post("a", {"input": [float(i)]}), range(12)))
    refused = [r for r in responses if r.status_code == 503]
    assert refused, "some requests should have been refused"
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert all(r.json()["default"] is False for r in responses if r.status_code == 200)


def test_a_batch_larger_than_the_queue_room_is_refused_whole(make_cluster):
    """No half-queued request: after the 503 the container has seen none of its inputs."""
    cluster = make_cluster(
        CLIPPER_QUEUE_MAX_ENTRIES="2", CLIPPER_CACHE_SIZE_BYTES="0", CLIPPER_MAX_INPUTS_PER_REQUEST="10"
    )
    cluster.model("m")
    cluster.container("m", "count_calls")
    cluster.app("a", model="m")
    refused = cluster.post("a", {"input_batch": [[1.0], [2.0], [3.0]]})
    assert refused.status_code == 503
    assert refused.json()["error"] == "Overloaded" and "2 queries" in refused.json()["cause"]
    reply = cluster.post("a", {"input": [4.0]}).json()
    assert (reply["output"], reply["default"]) == (1, False)  # the first input the model ever saw


def test_a_batch_over_the_per_request_cap_is_413_naming_it_and_never_queued(make_cluster):
    """The cap defaults to the queue bound: a batch that could never be queued is no 503 to retry."""
    cluster = make_cluster(CLIPPER_QUEUE_MAX_ENTRIES="2", CLIPPER_CACHE_SIZE_BYTES="0")
    cluster.model("m")
    cluster.container("m", "count_calls")
    cluster.app("a", model="m")
    refused = cluster.post("a", {"input_batch": [[1.0], [2.0], [3.0]]})
    assert refused.status_code == 413
    assert "retry-after" not in refused.headers
    assert refused.json() == {
        "error": "Request too large",
        "cause": "input_batch has 3 inputs; a request may carry at most 2 (max_inputs_per_request)",
    }
    reply = cluster.post("a", {"input": [4.0]}).json()
    assert (reply["output"], reply["default"]) == (1, False)  # the first input the model ever saw


def test_with_a_query_token_predict_and_metrics_need_it_and_health_does_not(make_cluster, redis_url):
    cluster = make_cluster(CLIPPER_QUERY_TOKEN="t0ken")
    cluster.model("m")
    asyncio.run(_add_app(redis_url, "a", "m"))
    good = {"Authorization": "Bearer t0ken"}
    url = f"{cluster.url}/a/predict"
    wait_until(lambda: requests.post(url, json={"input": [1.0]}, headers=good, timeout=5).ok, what="app a")
    for headers in ({}, {"Authorization": "Bearer nope"}):
        refused = requests.post(url, json={"input": [1.0]}, headers=headers, timeout=5)
        assert (refused.status_code, refused.headers["www-authenticate"]) == (401, "Bearer")
        assert refused.json()["error"] == "Unauthorized"
        assert requests.get(f"{cluster.url}/metrics", headers=headers, timeout=5).status_code == 401
    assert requests.get(f"{cluster.url}/metrics", headers=good, timeout=5).status_code == 200
    assert requests.get(f"{cluster.url}/health", timeout=5).status_code == 200


async def _add_app(redis_url: str, name: str, model: str) -> None:
    async with ConfigStore(redis_url) as store:
        app = App(name=name, input_type="doubles", default_output="-1.0", latency_slo_micros=10**6)
        await store.add_app(app)
        await store.add_link(name, model)


def test_a_client_that_leaves_before_its_answer_does_not_disturb_the_model(cluster: QueryCluster):
    """The answer for a closed connection is dropped; the container link and other clients carry on."""
    cluster.model("m")
    cluster.container("m", "slow", TEST_SLOW_S="0.3")
    cluster.app("a", model="m", slo_micros=20_000_000)
    before = cluster.replicas("m", "1")
    host, port = cluster.url.removeprefix("http://").split(":")
    body = b'{"input": [1.0]}'
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /a/predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
    reply = cluster.post("a", {"input": [2.0]}, 20).json()
    assert reply["default"] is False
    assert cluster.replicas("m", "1") == before


def test_a_clipper_0_4_container_registers_and_serves(cluster: QueryCluster):
    """tests/rpc/clipper_container.py speaks RPC v3 as Clipper 0.4's Python container does."""
    cluster.model("legacy")
    before = cluster.replicas("legacy", "1")
    legacy_env = {
        "CLIPPER_MODEL_NAME": "legacy",
        "CLIPPER_MODEL_VERSION": "1",
        "CLIPPER_INPUT_TYPE": "doubles",
        "CLIPPER_PORT": str(cluster.rpc_port),
    }
    cluster._spawn([sys.executable, str(TESTS_DIR / "rpc" / "clipper_container.py")], legacy_env, "legacy")
    wait_until(lambda: cluster.replicas("legacy", "1") > before, what="the Clipper container to register")
    cluster.app("a", model="legacy")
    reply = cluster.post("a", {"input": [1.0, 2.0]}).json()
    assert reply["default"] is False
    assert reply["output"] == 3.0


def test_an_app_may_ask_for_the_default_output_instead_of_503_when_overloaded(make_cluster):
    cluster = make_cluster(CLIPPER_QUEUE_MAX_ENTRIES="2", CLIPPER_CACHE_SIZE_BYTES="0")
    cluster.model("m")
    cluster.container("m", "slow", TEST_SLOW_S="0.5")
    cluster.app("a", model="m", slo_micros=20_000_000, on_overload="default")
    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda i: cluster.post("a", {"input": [float(i)]}), range(12)))
    assert all(r.status_code == 200 for r in replies)
    overloaded = [r.json() for r in replies if r.json()["default"]]
    assert overloaded, "some queries should have found the queue full"
    assert all("queue is full" in r["default_explanation"] for r in overloaded)
