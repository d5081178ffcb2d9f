"""Schemathesis over the management API's own OpenAPI, against the real process on a real Redis.

Every built-in check is on (no 5xx; only documented statuses, content types and bodies; valid data
accepted, invalid data rejected), plus two of ours: a schema-valid body is refused only for the store's
state, never its shape, and a rejected (4xx) request leaves every Redis database as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.schemas import OpenApiSchema

from clipper.config.store import ConfigStore
from clipper.frontends.management import Management
from clipper.frontends.management_http import build_management_app
from tests.conftest import free_port, ping_status, wait_until

# Examples per operation and phase: the 17 operations take ~20 s on two cores.
MAX_EXAMPLES = 100

# Messages that refuse a body for its shape or values: a schema-valid body must never get one.
SHAPE_REJECTIONS = (
    "Error parsing JSON: ",
    "The batch size must be positive",
    "Invalid model name supplied",
    "Invalid model version supplied",
    "Invalid label supplied",
    "Please provide the name of the model",
    "Applications must be linked with at most one model",
)

APP = {"name": "app", "input_type": "doubles", "default_output": "-1", "latency_slo_micros": 1000}
MODEL = {
    "model_name": "m",
    "model_version": "1",
    "labels": ["a"],
    "input_type": "doubles",
    "container_name": "img:1",
    "model_data_path": "DEPRECATED",
    "batch_size": -1,
}
SEED: list[tuple[str, dict[str, Any]]] = [
    ("add_app", APP),
    ("add_app", APP | {"name": "free", "input_type": "strings"}),
    ("add_model", MODEL),
    ("add_model_links", {"app_name": "app", "model_names": ["m"]}),
]

Snapshot = dict[int, dict[bytes, tuple[bytes | None, int]]]


def _local_schema() -> OpenApiSchema:
    """The app's OpenAPI built in-process (no I/O): one pytest item per operation needs it at collection."""
    app = build_management_app(Management(ConfigStore("redis://127.0.0.1:1")))
    loaded = schemathesis.openapi.from_dict(app.openapi())
    loaded.config.generation.update(max_examples=MAX_EXAMPLES, database="none")
    # Clipper answers an unknown or existing name with 400, not 404/409: allowed for a valid body, but
    # only with a message about the store's state (`rejected_for_state_only`).
    accepted = loaded.config.checks.positive_data_acceptance
    accepted.expected_statuses = [*accepted.expected_statuses, "400"]
    return loaded


schema = _local_schema()


def rejected_for_state_only(
    _ctx: object, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    """A schema-valid body may be refused only for what the store holds (an unknown or existing name)."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 400:
        return
    text = response.content.decode()
    assert not text.startswith(SHAPE_REJECTIONS), f"schema-valid body rejected for its shape: {text}"


def snapshot(clients: list[redis.Redis]) -> Snapshot:
    """Every key of every database, serialised with DUMP, with its TTL."""
    return {
        db: {key: (client.dump(key), client.pttl(key)) for key in client.keys("*")}  # type: ignore[misc]
        for db, client in enumerate(clients)
    }


@pytest.fixture(scope="module")
def management_url(redis_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m clipper.frontends.management` on a free port, connected to the session's Redis."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CLIPPER_REDIS_URL": f"redis://127.0.0.1:{redis_port}",
        "CLIPPER_HTTP_HOST": "127.0.0.1",
        "CLIPPER_MANAGEMENT_PORT": str(port),
    }
    log: Path = tmp_path_factory.mktemp("management") / "management.log"
    with open(log, "wb") as out:
        cmd = [sys.executable, "-m", "clipper.frontends.management"]
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: ping_status(url) == 200, 30, "the management frontend to answer PONG")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def seeded(management_url: str, redis_url: str) -> str:
    """The live API over a store holding a linked app and model, so requests can collide with them."""
    for path, body in SEED:
        r = requests.post(f"{management_url}/admin/{path}", json=body, timeout=5)
        assert r.status_code == 200, r.text
    return management_url


@pytest.fixture
def redis_dbs(redis_port: int) -> Iterator[list[redis.Redis]]:
    clients = [redis.Redis(port=redis_port, db=db) for db in range(16)]
    yield clients
    for client in clients:
        client.close()


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # state is meant to build up
def test_management_api_conforms_to_its_openapi(
    case: schemathesis.Case[Any], seeded: str, redis_dbs: list[redis.Redis]
) -> None:
    before = snapshot(redis_dbs)
    response = case.call_and_validate(base_url=seeded, additional_checks=[rejected_for_state_only])
    if 400 <= response.status_code < 500:
        changed = f"{case.method} {case.path} answered {response.status_code} but changed Redis"
        assert snapshot(redis_dbs) == before, changed


def test_served_openapi_is_the_one_fuzzed(management_url: str) -> None:
    assert requests.get(f"{management_url}/openapi.json", timeout=5).json() == schema.raw_schema
