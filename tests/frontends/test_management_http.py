"""The /admin API against a real Redis: every endpoint's success and Clipper's error texts (§3.1)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import requests
from pydantic import SecretStr

from clipper.config.redis_server import start_redis
from clipper.config.store import ConfigStore, Db
from clipper.frontends.management import Management
from clipper.frontends.management_http import build_management_app
from clipper.schema import Container
from tests.conftest import free_port, ping_status, wait_until

SCHEMA_PREFIX = "Error parsing JSON: "
BATCH_SIZE_ERROR = "The batch size must be positive or DEFAULT_BATCH_SIZE, which is -1"


async def post(client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return await client.post(f"/admin/{path}", content=content, headers={"Content-Type": "application/json"})


async def ok(client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    r = await post(client, path, body)
    assert r.status_code == 200, r.text
    return r


async def rejected(client: httpx.AsyncClient, path: str, body: Any) -> str:
    r = await post(client, path, body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def app_body(name: str = "app", input_type: str = "doubles", **over: Any) -> dict[str, Any]:
    return {
        "name": name,
        "input_type": input_type,
        "default_output": "-1.0",
        "latency_slo_micros": 100_000,
    } | over


def model_body(
    name: str = "m", version: str = "1", input_type: str = "doubles", **over: Any
) -> dict[str, Any]:
    body = {
        "model_name": name,
        "model_version": version,
        "labels": ["a", "b"],
        "input_type": input_type,
        "container_name": "img:1",
        "model_data_path": "DEPRECATED",
        "batch_size": -1,
    }
    return body | over


async def linked_setup(client: httpx.AsyncClient) -> None:
    """App `app` (doubles) linked to model `m` (version 1, doubles)."""
    await ok(client, "add_app", app_body())
    await ok(client, "add_model", model_body())
    await ok(client, "add_model_links", {"app_name": "app", "model_names": ["m"]})


async def snapshot(redis_url: str) -> dict[int, dict[bytes, tuple[bytes | None, int]]]:
    """Every key of every database, serialised with DUMP, with its TTL."""
    out: dict[int, dict[bytes, tuple[bytes | None, int]]] = {}
    for db in range(16):
        client = aioredis.Redis.from_url(redis_url, db=db)
        try:
            keys = await client.keys("*")
            out[db] = {k: (await client.dump(k), await client.pttl(k)) for k in keys}
        finally:
            await client.aclose()
    return out


# --- health, routing, docs ------------------------------------------------------------------------


async def test_ping_is_503_until_redis_is_connected_then_pong(redis_url: str) -> None:
    management = Management(ConfigStore(redis_url))
    transport = httpx.ASGITransport(app=build_management_app(management))
    async with httpx.AsyncClient(transport=transport, base_url="http://mgmt") as c:
        r = await c.get("/admin/ping")
        assert r.status_code == 503 and "Waiting for Redis" in r.json()["detail"]
        assert (await post(c, "add_app", app_body())).status_code == 503
        await management.connect()
        r = await c.get("/admin/ping")
        assert (r.status_code, r.text) == (200, "PONG")
        await management.close()


async def test_unknown_route_is_404_json_and_wrong_method_405(client: httpx.AsyncClient) -> None:
    r = await post(client, "no_such_call", {})
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = await client.get("/admin/add_app")
    assert r.status_code == 405 and "detail" in r.json()


async def test_openapi_docs_list_every_endpoint(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    paths = (await client.get("/openapi.json")).json()["paths"]
    names = {
        "ping", "add_app", "delete_app", "add_model", "delete_versioned_model", "set_model_version",
        "add_model_links", "delete_model_links", "get_all_applications", "get_application",
        "get_linked_models", "get_all_models", "get_model", "get_all_containers", "get_container",
        "get_state", "set_app_policy", "get_app_policy",
        "set_num_replicas", "get_replicas", "get_model_logs", "cluster_view", "metrics_targets",
    }  # fmt: skip
    assert set(paths) == {f"/admin/{n}" for n in names}
    add_app = paths["/admin/add_app"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(add_app["required"]) == {"name", "input_type", "default_output", "latency_slo_micros"}


async def test_openapi_documents_every_status_an_admin_call_returns(client: httpx.AsyncClient) -> None:
    """Schemathesis found the 400s undocumented; 503 comes while Redis is unreachable."""
    doc = (await client.get("/openapi.json")).json()
    for path, item in doc["paths"].items():
        responses = item.get("post", item.get("get"))["responses"]
        assert "503" in responses, path
        if path != "/admin/ping":
            assert responses["400"]["content"] == {"text/plain": {"schema": {"type": "string"}}}, path


async def test_openapi_documents_the_401_body_when_a_token_is_required(management: Management) -> None:
    transport = httpx.ASGITransport(app=build_management_app(management, SecretStr("s3cret")))
    async with httpx.AsyncClient(transport=transport, base_url="http://mgmt") as c:
        doc = (await c.get("/openapi.json")).json()
        r = await post(c, "get_all_applications", {"verbose": False})
    unauthorized = doc["paths"]["/admin/add_app"]["post"]["responses"]["401"]["content"]["application/json"]
    assert set(unauthorized["schema"]["required"]) == {"error", "cause"} == set(r.json())
    assert r.status_code == 401 and r.headers["content-type"] == "application/json"


async def test_openapi_states_the_body_rules_that_are_enforced(client: httpx.AsyncClient) -> None:
    def body(path: str) -> Any:
        return paths[f"/admin/{path}"]["post"]["requestBody"]["content"]["application/json"]["schema"]

    paths = (await client.get("/openapi.json")).json()["paths"]
    add_app, add_model = body("add_app")["properties"], body("add_model")["properties"]
    assert add_app["name"]["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    assert set(add_app["input_type"]["enum"]) >= {"bytes", "integers", "floats", "doubles", "strings", "d"}
    assert (add_app["latency_slo_micros"]["exclusiveMinimum"], add_app["latency_slo_micros"]["maximum"]) == (
        0,
        2**31 - 1,
    )
    assert add_model["model_name"]["pattern"] == add_model["labels"]["items"]["pattern"] == "^[^,:]*$"
    assert add_model["batch_size"]["anyOf"] == [{"const": -1}, {"minimum": 1}]
    links = body("add_model_links")["properties"]["model_names"]
    assert (links["minItems"], links["maxItems"]) == (1, 1)
    assert body("add_app")["additionalProperties"] is False
    # Every spelling the enum lists is accepted, and only those.
    for spelling in add_app["input_type"]["enum"]:
        await ok(client, "add_app", app_body(f"a-{spelling}", spelling))
    assert "input_type" in await rejected(client, "add_app", app_body("x", "Doubles"))


async def test_openapi_version_is_the_package_version(client: httpx.AsyncClient) -> None:
    info = (await client.get("/openapi.json")).json()["info"]
    assert info["version"] == importlib.metadata.version("clipper") == "0.5.0"


async def test_docs_are_served_without_a_cdn(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    assert "SwaggerUIBundle" in html and "/openapi.json" in html
    assert not re.findall(r"https?://", html), "the docs page must not load anything from the network"
    assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', html)
    assert len(assets) == 3  # script, stylesheet, icon
    for asset in assets:
        r = await client.get(asset)
        assert r.status_code == 200 and len(r.content) > 0, asset
    assert "SwaggerUIBundle" in (await client.get("/docs/assets/swagger-ui-bundle.js")).text


# --- applications ---------------------------------------------------------------------------------


async def test_add_app_then_get_application(client: httpx.AsyncClient) -> None:
    r = await ok(client, "add_app", app_body(input_type="d"))
    assert r.text == "Successfully added application with name 'app'"
    r = await ok(client, "get_application", {"name": "app"})
    assert r.json() == {
        "name": "app",
        "input_type": "doubles",
        "default_output": "-1.0",
        "latency_slo_micros": 100_000,
        "linked_models": [],
        "on_overload": "reject",  # ours; Clipper's keys are all there
        "policy": "DefaultOutputSelectionPolicy",  # ours too
        "policy_params": {},
        "input_shape": None,  # ours too
    }
    assert await rejected(client, "add_app", app_body()) == "application 'app' already exists"


async def test_an_app_may_ask_for_default_outputs_when_overloaded(client: httpx.AsyncClient) -> None:
    await ok(client, "add_app", app_body() | {"on_overload": "default"})
    r = await ok(client, "get_application", {"name": "app"})
    assert r.json()["on_overload"] == "default"
    assert "on_overload" in await rejected(client, "add_app", app_body(name="b") | {"on_overload": "drop"})


async def test_add_app_without_json_content_type(client: httpx.AsyncClient) -> None:
    """curl -d sends application/x-www-form-urlencoded; the body is still read as JSON."""
    r = await client.post(
        "/admin/add_app",
        content=orjson.dumps(app_body()),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    r = await client.post("/admin/get_application", content=b'{"name": "app"}')
    assert r.json()["name"] == "app"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (app_body(input_type="tensors"), "input_type: Invalid input_type 'tensors'. Use one of: bytes,"),
        (app_body(name="My_App"), "name: Invalid value: 'My_App': application name must consist of"),
        (app_body(name="a,b"), "name: Invalid value: 'a,b'"),
        (app_body(name="a" * 64), "name: Invalid value: 'aaaaaaaaaaaaaaaaaaaa'... (64 characters)"),
        (app_body(latency_slo_micros=0), "latency_slo_micros: Input should be greater than 0"),
        (app_body(latency_slo_micros=-5), "latency_slo_micros: Input should be greater than 0"),
        (app_body(latency_slo_micros=2**31), "latency_slo_micros: Input should be less than or equal to"),
        (app_body(latency_slo_micros="100"), "latency_slo_micros: Input should be a valid integer"),
        (app_body(latency_slo_micros=1.5), "latency_slo_micros: Input should be a valid integer"),
        (app_body(default_output=1), "default_output: Input should be a valid string"),
        (app_body(extra=1), "extra: unknown key"),
        ({"name": "app"}, "JSON object does not have required key: input_type"),
        (b'{"name": ', "JSON parse error: "),
        (b"", "JSON parse error: "),
        (b"[1, 2]", "Input should be an object"),
    ],
)
async def test_add_app_rejects_bad_bodies(client: httpx.AsyncClient, body: Any, expected: str) -> None:
    text = await rejected(client, "add_app", body)
    assert text.startswith(SCHEMA_PREFIX + expected), text
    assert text.endswith('Expected JSON schema: {"name" := string, "input_type" := string, '
                         '"default_output" := string, "latency_slo_micros" := integer, '
                         '"on_overload" := string, "input_shape" := [integer] | null}')  # fmt: skip
    assert (await ok(client, "get_all_applications", {"verbose": False})).json() == []


async def test_integral_numbers_are_integers(client: httpx.AsyncClient) -> None:
    """JSON Schema's (so the OpenAPI's) integer includes `1.0` and `1e5`; Clipper's rapidjson refused them."""
    await ok(client, "add_app", app_body(latency_slo_micros=1e5, default_output="cat"))
    assert (await ok(client, "get_application", {"name": "app"})).json()["latency_slo_micros"] == 100_000
    assert (await ok(client, "get_state", {"app_name": "app", "uid": -246.0})).text == "cat"
    await ok(client, "add_model", model_body(batch_size=4.0))
    one = await ok(client, "get_container", {"model_name": "m", "model_version": "1", "replica_id": 0.0})
    assert one.json() == {}
    text = await rejected(client, "get_state", {"app_name": "app", "uid": 0.5})
    assert text.startswith(SCHEMA_PREFIX + "uid: Input should be a valid integer")


async def test_delete_app_removes_links_and_state(client: httpx.AsyncClient, store: ConfigStore) -> None:
    await linked_setup(client)
    r = await ok(client, "delete_app", {"name": "app"})
    assert r.text == "Successfully deleted application with name 'app'"
    assert (await ok(client, "get_application", {"name": "app"})).json() == {}
    assert await store.get_links("app") == [] and await store.get_state("app") is None
    assert await rejected(client, "delete_app", {"name": "app"}) == "Application 'app' does not exist"
    # Re-created app starts clean (Clipper bug #774: it inherited the old link).
    await ok(client, "add_app", app_body())
    assert (await ok(client, "get_linked_models", {"app_name": "app"})).json() == []


async def test_get_all_applications(client: httpx.AsyncClient) -> None:
    await linked_setup(client)
    await ok(client, "add_app", app_body("other", "strings"))
    assert (await ok(client, "get_all_applications", {"verbose": False})).json() == ["app", "other"]
    verbose = (await ok(client, "get_all_applications", {"verbose": True})).json()
    assert [(a["name"], a["input_type"], a["linked_models"]) for a in verbose] == [
        ("app", "doubles", ["m"]),
        ("other", "strings", []),
    ]
    text = await rejected(client, "get_all_applications", {"verbose": "true"})
    assert text.startswith(SCHEMA_PREFIX + "verbose: Input should be a valid boolean")


async def test_get_linked_models(client: httpx.AsyncClient) -> None:
    await linked_setup(client)
    assert (await ok(client, "get_linked_models", {"app_name": "app"})).json() == ["m"]
    text = await rejected(client, "get_linked_models", {"app_name": "nope"})
    assert text == "No application with name 'nope' exists."


async def test_get_state(client: httpx.AsyncClient) -> None:
    await ok(client, "add_app", app_body(default_output="cat"))
    assert (await ok(client, "get_state", {"app_name": "app", "uid": 0})).text == "cat"
    assert (await ok(client, "get_state", {"app_name": "app", "uid": 7})).text == "cat"
    assert (await ok(client, "get_state", {"app_name": "nope", "uid": 0})).text == ""
    text = await rejected(client, "get_state", {"app_name": "app"})
    assert text.startswith(SCHEMA_PREFIX + "JSON object does not have required key: uid")


# --- models ---------------------------------------------------------------------------------------


async def test_add_model_becomes_current_and_get_model(client: httpx.AsyncClient) -> None:
    r = await ok(client, "add_model", model_body(input_type="d"))
    assert r.text == "Successfully added model with name 'm' and input type 'doubles'"
    await ok(client, "add_model", model_body(version="2", labels=[]))
    v1 = (await ok(client, "get_model", {"model_name": "m", "model_version": "1"})).json()
    assert v1 == {
        "model_name": "m",
        "model_version": "1",
        "input_type": "doubles",
        "labels": ["a", "b"],
        "container_name": "img:1",
        "model_data_path": "DEPRECATED",
        "is_current_version": False,
        "input_shape": None,  # ours
    }
    v2 = (await ok(client, "get_model", {"model_name": "m", "model_version": "2"})).json()
    assert v2["is_current_version"] and v2["labels"] == [""]  # Clipper's round trip of an empty list
    assert (await ok(client, "get_model", {"model_name": "m", "model_version": "3"})).json() == {}
    text = await rejected(client, "add_model", model_body())
    assert text == "model with name 'm' and version '1' already exists"


async def test_get_all_models(client: httpx.AsyncClient) -> None:
    await ok(client, "add_model", model_body())
    await ok(client, "add_model", model_body(version="2"))
    await ok(client, "add_model", model_body("n", "7", "strings"))
    assert (await ok(client, "get_all_models", {"verbose": False})).json() == ["m:1", "m:2", "n:7"]
    verbose = (await ok(client, "get_all_models", {"verbose": True})).json()
    assert [(m["model_name"], m["model_version"], m["is_current_version"]) for m in verbose] == [
        ("m", "1", False),
        ("m", "2", True),
        ("n", "7", True),
    ]


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({"batch_size": 0}, BATCH_SIZE_ERROR),
        ({"batch_size": -2, "model_name": "a,b"}, BATCH_SIZE_ERROR),  # batch size first, as in Clipper
        ({"model_name": "a,b"}, "Invalid model name supplied: a,b. Contains one of: ',', ':'"),
        ({"model_version": "1:2"}, "Invalid model version supplied: 1:2. Contains one of: ',', ':'"),
        ({"labels": ["ok", "x:y"]}, "Invalid label supplied: x:y. Contains one of: ',', ':'"),
    ],
)  # fmt: skip
async def test_add_model_validation_messages(
    client: httpx.AsyncClient, over: dict[str, Any], expected: str
) -> None:
    assert await rejected(client, "add_model", model_body(**over)) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (model_body(input_type="image"), "input_type: Invalid input_type 'image'"),
        (model_body(batch_size=2**31), "batch_size: Input should be less than or equal to 2147483647"),
        (model_body(labels="a,b"), "labels: Input should be a valid array"),
        ({k: v for k, v in model_body().items() if k != "labels"}, "JSON object does not have required key"),
    ],
)  # fmt: skip
async def test_add_model_rejects_bad_bodies(client: httpx.AsyncClient, body: Any, expected: str) -> None:
    text = await rejected(client, "add_model", body)
    assert text.startswith(SCHEMA_PREFIX + expected), text


async def test_add_model_keeps_input_type_of_linked_apps(client: httpx.AsyncClient) -> None:
    await linked_setup(client)
    text = await rejected(client, "add_model", model_body(version="2", input_type="ints"))
    assert text == (
        "Model with name 'm' is already linked to app 'app' using input type 'doubles'. The input type you "
        "provided for a new version of the model, 'integers', is not compatible."
    )


async def test_delete_versioned_model_deletes_for_real(client: httpx.AsyncClient, store: ConfigStore) -> None:
    await ok(client, "add_model", model_body())
    await ok(client, "add_model", model_body(version="2"))
    rid = await store.next_replica_id("m", "2")
    await store.add_container(
        Container(model_name="m", model_version="2", model_replica_id=rid, input_type="doubles")
    )
    # Version 2 is current and version 1 remains: refused, so nothing is left pointing at a deleted version.
    refused = await post(client, "delete_versioned_model", {"model_name": "m", "model_version": "2"})
    assert refused.status_code == 409
    assert "make another version current first" in refused.text
    assert (await ok(client, "get_all_models", {"verbose": False})).json() == ["m:1", "m:2"]
    await ok(client, "set_model_version", {"model_name": "m", "model_version": "1"})
    r = await ok(client, "delete_versioned_model", {"model_name": "m", "model_version": "2"})
    assert r.text == "Successfully deleted model with name 'm' and version '2'"
    assert (await ok(client, "get_all_models", {"verbose": False})).json() == ["m:1"]
    assert (await ok(client, "get_all_containers", {"verbose": False})).json() == []
    text = await rejected(client, "delete_versioned_model", {"model_name": "m", "model_version": "2"})
    assert text == "model with name 'm' and version '2' does not exist"
    # Clipper could not re-add a half-deleted version; here it is simply gone.
    await ok(client, "add_model", model_body(version="2"))
    await ok(client, "set_model_version", {"model_name": "m", "model_version": "1"})
    await ok(client, "delete_versioned_model", {"model_name": "m", "model_version": "2"})
    await ok(client, "delete_versioned_model", {"model_name": "m", "model_version": "1"})
    assert await store.get_current_version("m") is None  # the last version took the pointer with it


async def test_version_marked_by_clipper_can_be_deleted_and_re_added(
    client: httpx.AsyncClient, store: ConfigStore, redis_url: str
) -> None:
    """Clipper left a version without its `valid` field until a frontend swept it (reference §9 #19)."""
    await ok(client, "add_model", model_body())
    await store.db(Db.MODELS).hdel("m:1", "valid")
    assert (await ok(client, "get_all_models", {"verbose": False})).json() == []
    await ok(client, "delete_versioned_model", {"model_name": "m", "model_version": "1"})
    assert await snapshot(redis_url) == {db: {} for db in range(16)}
    await ok(client, "add_model", model_body())
    assert (await ok(client, "get_all_models", {"verbose": False})).json() == ["m:1"]


async def test_set_model_version(client: httpx.AsyncClient) -> None:
    await ok(client, "add_model", model_body())
    await ok(client, "add_model", model_body(version="2"))
    r = await ok(client, "set_model_version", {"model_name": "m", "model_version": "1"})
    assert r.text == "Successfully set model with name 'm' to version '1'"
    assert (await ok(client, "get_model", {"model_name": "m", "model_version": "1"})).json()[
        "is_current_version"
    ]
    text = await rejected(client, "set_model_version", {"model_name": "x", "model_version": "1"})
    assert text == "Cannot set version for nonexistent model 'x'"
    text = await rejected(client, "set_model_version", {"model_name": "m", "model_version": "9"})
    assert text == "Cannot set non-existent version '9' for model with name 'm'"


async def test_set_model_version_keeps_input_type_of_linked_apps(client: httpx.AsyncClient) -> None:
    await ok(client, "add_model", model_body(version="2", input_type="ints"))
    await ok(client, "add_model", model_body(version="1"))  # current: 1, doubles
    await ok(client, "add_app", app_body())
    await ok(client, "add_model_links", {"app_name": "app", "model_names": ["m"]})
    text = await rejected(client, "set_model_version", {"model_name": "m", "model_version": "2"})
    assert text.startswith("Model with name 'm' is already linked to app 'app' using input type 'doubles'.")


# --- links ----------------------------------------------------------------------------------------


async def test_add_and_delete_model_links(client: httpx.AsyncClient) -> None:
    await ok(client, "add_app", app_body())
    await ok(client, "add_model", model_body())
    r = await ok(client, "add_model_links", {"app_name": "app", "model_names": ["m"]})
    assert r.text == "Successfully linked model with name 'm' to application 'app'"
    assert (await ok(client, "get_application", {"name": "app"})).json()["linked_models"] == ["m"]
    r = await ok(client, "delete_model_links", {"app_name": "app", "model_names": ["m"]})
    assert r.text == "Success!"
    assert (await ok(client, "get_linked_models", {"app_name": "app"})).json() == []


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["ghost"], "No model with name 'ghost' exists."),
        (["s"], "Model with name 's' has incompatible input_type 'strings'. "
                "Requested app to link to has input_type 'doubles'."),
        ([], "Please provide the name of the model that you want to link to the application 'app'"),
        (["m", "m2"], "Applications must be linked with at most one model. "
                      "Attempted to add links to 2 models."),
        (["m"], "The model with name 'm' is already linked to 'app'"),
        (["m2"], "A model with name m is already linked to 'app'."),
    ],
)  # fmt: skip
async def test_add_model_links_errors(client: httpx.AsyncClient, names: list[str], expected: str) -> None:
    await linked_setup(client)
    await ok(client, "add_model", model_body("m2"))
    await ok(client, "add_model", model_body("s", input_type="strings"))
    assert await rejected(client, "add_model_links", {"app_name": "app", "model_names": names}) == expected


async def test_link_errors_name_the_app_first(client: httpx.AsyncClient) -> None:
    body = {"app_name": "nope", "model_names": ["ghost"]}
    assert await rejected(client, "add_model_links", body) == "No app with name 'nope' exists."
    assert await rejected(client, "delete_model_links", body) == "No app with name nope exists."


async def test_delete_nonexistent_link(client: httpx.AsyncClient) -> None:
    await linked_setup(client)
    text = await rejected(client, "delete_model_links", {"app_name": "app", "model_names": ["other"]})
    assert text == "Cannot remove nonexistent link between app app and model other"


async def test_concurrent_links_to_one_app_yield_one_link(client: httpx.AsyncClient) -> None:
    await ok(client, "add_app", app_body())
    names = [f"m{i}" for i in range(8)]
    for name in names:
        await ok(client, "add_model", model_body(name))
    replies = await asyncio.gather(
        *(post(client, "add_model_links", {"app_name": "app", "model_names": [n]}) for n in names)
    )
    assert sorted(r.status_code for r in replies) == [200] + [400] * 7
    assert len((await ok(client, "get_linked_models", {"app_name": "app"})).json()) == 1


# --- containers -----------------------------------------------------------------------------------


async def test_containers_written_by_query_frontends(client: httpx.AsyncClient, store: ConfigStore) -> None:
    for version, frontend in (("1", "fe-a"), ("1", "fe-b"), ("2", "fe-a")):
        rid = await store.next_replica_id("m", version)
        record = Container(
            model_name="m",
            model_version=version,
            model_replica_id=rid,
            input_type="doubles",
            frontend_id=frontend,
        )
        await store.add_container(record)
    assert (await ok(client, "get_all_containers", {"verbose": False})).json() == ["m:1:0", "m:1:1", "m:2:0"]
    verbose = (await ok(client, "get_all_containers", {"verbose": True})).json()
    assert verbose[1] == {
        "model_id": "m:1",
        "model_name": "m",
        "model_version": "1",
        "model_replica_id": 1,
        "input_type": "doubles",
    }
    one = await ok(client, "get_container", {"model_name": "m", "model_version": "2", "replica_id": 0})
    assert one.json()["model_id"] == "m:2"
    none = await ok(client, "get_container", {"model_name": "m", "model_version": "2", "replica_id": 5})
    assert none.json() == {}
    text = await rejected(
        client, "get_container", {"model_name": "m", "model_version": "2", "replica_id": "0"}
    )
    assert text.startswith(SCHEMA_PREFIX + "replica_id: Input should be a valid integer")


# --- a rejected request changes nothing -----------------------------------------------------------

REJECTED = [
    ("add_app", app_body()),
    ("add_app", app_body("fresh", latency_slo_micros=0)),
    ("add_app", app_body("fresh", input_type="nope")),
    ("delete_app", {"name": "ghost"}),
    ("add_model", model_body()),
    ("add_model", model_body(version="2", input_type="strings")),
    ("add_model", model_body("fresh", batch_size=0)),
    ("add_model", model_body("fresh", labels=["ok", "bad,label"])),
    ("add_model", model_body("fresh", extra="x")),
    ("delete_versioned_model", {"model_name": "m", "model_version": "9"}),
    ("set_model_version", {"model_name": "m", "model_version": "9"}),
    ("set_model_version", {"model_name": "m", "model_version": "0"}),
    ("add_model_links", {"app_name": "app", "model_names": ["m"]}),
    ("add_model_links", {"app_name": "app", "model_names": ["t"]}),
    ("add_model_links", {"app_name": "free", "model_names": ["m", "t"]}),
    ("add_model_links", {"app_name": "free", "model_names": ["s"]}),
    ("delete_model_links", {"app_name": "app", "model_names": ["m", "t"]}),
]


@pytest.mark.parametrize(("path", "body"), REJECTED, ids=[f"{p}-{i}" for i, (p, _) in enumerate(REJECTED)])
async def test_rejected_request_changes_nothing(
    client: httpx.AsyncClient, redis_url: str, path: str, body: dict[str, Any]
) -> None:
    await ok(client, "add_model", model_body(version="0", input_type="ints"))
    await linked_setup(client)
    await ok(client, "add_app", app_body("free"))
    await ok(client, "add_model", model_body("t"))
    await ok(client, "set_model_version", {"model_name": "t", "model_version": "1"})
    await ok(client, "add_model", model_body("s", input_type="strings"))
    before = await snapshot(redis_url)
    await rejected(client, path, body)
    assert await snapshot(redis_url) == before


# --- the real process -----------------------------------------------------------------------------


def test_real_server_waits_for_redis_then_serves(tmp_path: Path) -> None:
    """`python -m clipper.frontends.management` starts before Redis, says it waits, and serves once it can."""
    redis_port, http_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}"
    env = {
        **os.environ,
        "CLIPPER_REDIS_URL": f"redis://127.0.0.1:{redis_port}",
        "CLIPPER_HTTP_HOST": "127.0.0.1",
        "CLIPPER_MANAGEMENT_PORT": str(http_port),
    }
    log = tmp_path / "management.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clipper.frontends.management"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: ping_status(url) == 503, 30, "the server to answer 503 while Redis is down")
        wait_until(
            lambda: f"Waiting for Redis at redis://127.0.0.1:{redis_port}" in log.read_text(),
            30,
            "the wait log",
        )
        assert f"Management frontend starting on {url}" in log.read_text()
        redis_proc = start_redis(redis_port, tmp_path / "redis", tmp_path / "redis.log")
        try:
            wait_until(lambda: ping_status(url) == 200, 30, "ping to turn 200 once Redis is up")
            assert requests.get(f"{url}/admin/ping", timeout=5).text == "PONG"
            r = requests.post(f"{url}/admin/add_app", json=app_body(), timeout=5)
            assert (r.status_code, r.text) == (200, "Successfully added application with name 'app'")
            r = requests.post(f"{url}/admin/add_app", json=app_body(), timeout=5)
            assert (r.status_code, r.text) == (400, "application 'app' already exists")
            r = requests.post(f"{url}/admin/get_all_applications", data=b'{"verbose": false}', timeout=5)
            assert r.json() == ["app"]
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)
    finally:
        proc.terminate()
        try:
            # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it
            assert proc.wait(10) in (0, -signal.SIGTERM), log.read_text()
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
