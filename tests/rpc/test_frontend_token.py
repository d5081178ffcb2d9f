"""A query frontend process with CLIPPER_RPC_TOKEN serves runtimes that present it and refuses others."""

from __future__ import annotations

import sys

from tests.conftest import wait_until
from tests.frontends.conftest import QueryCluster


def test_frontend_with_a_token_serves_only_containers_that_present_it(redis_url, tmp_path):
    cluster = QueryCluster(redis_url, tmp_path, CLIPPER_RPC_TOKEN="cluster-secret")
    try:
        cluster.model("m")
        cluster.app("a", model="m")
        cluster.container("m", "sum_inputs", CLIPPER_RPC_TOKEN="cluster-secret")
        reply = cluster.post("a", {"input": [1.0, 2.5]})
        assert reply.json()["output"] == 3.5 and reply.json()["default"] is False
        intruder = cluster._spawn(
            [sys.executable, "-m", "clipper.runtime"],
            {
                "CLIPPER_MODEL_NAME": "m",
                "CLIPPER_MODEL_VERSION": "1",
                "CLIPPER_PORT": str(cluster.rpc_port),
                "CLIPPER_PREDICT_MODULE": "clipper_test_models:sum_inputs",
            },
            "intruder",
        )
        log = tmp_path / f"intruder-{len(cluster.procs) - 1}.log"
        wait_until(lambda: b"CLIPPER_RPC_TOKEN is missing or wrong" in log.read_bytes(), what="the refusal")
        assert intruder.poll() is None  # it keeps retrying, slowly
        assert cluster.replicas("m", "1") == 1
    finally:
        cluster.close()
