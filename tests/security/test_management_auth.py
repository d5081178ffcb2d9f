"""The management API's bearer token, in process against a real Redis: who gets in, what a refusal says."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from clipper.config.store import ConfigStore
from clipper.frontends.management import Management
from clipper.frontends.management_http import build_management_app

TOKEN = "s3cret-admin-token"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    management = Management(ConfigStore(redis_url))
    await management.connect()
    transport = httpx.ASGITransport(app=build_management_app(management, SecretStr(TOKEN)))
    async with httpx.AsyncClient(transport=transport, base_url="http://mgmt") as c:
        yield c
    await management.close()


async def apps(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post("/admin/get_all_applications", json={"verbose": False}, headers=headers)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
    ids=["none", "wrong", "not-bearer", "longer"],
)
async def test_admin_routes_refuse_other_tokens(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    r = await apps(client, **headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    body = r.json()
    assert body["error"] == "Unauthorized" and body["cause"]
    assert TOKEN not in r.text


async def test_admin_routes_accept_the_token(client: httpx.AsyncClient) -> None:
    r = await apps(client, Authorization=f"Bearer {TOKEN}")
    assert r.status_code == 200 and r.json() == []
    write = await client.post(
        "/admin/add_app",
        json={"name": "a", "input_type": "doubles", "default_output": "0", "latency_slo_micros": 1000},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert write.status_code == 200, write.text


async def test_a_refused_write_changes_nothing(client: httpx.AsyncClient) -> None:
    body = {"name": "a", "input_type": "doubles", "default_output": "0", "latency_slo_micros": 1000}
    assert (await client.post("/admin/add_app", json=body)).status_code == 401
    assert (await apps(client, Authorization=f"Bearer {TOKEN}")).json() == []


async def test_ping_stays_open_for_health_checks(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/ping")
    assert r.status_code == 200 and r.text == "PONG"


async def test_openapi_declares_the_bearer_scheme(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    add_app = doc["paths"]["/admin/add_app"]["post"]
    assert add_app["security"] == [{name: []} for name in schemes]
    assert "401" in add_app["responses"]
    assert "security" not in doc["paths"]["/admin/ping"]["get"]


async def test_without_a_token_the_api_is_open(redis_url: str) -> None:
    """What Clipper 0.4 clients need: the operator turned admin auth off."""
    management = Management(ConfigStore(redis_url))
    await management.connect()
    transport = httpx.ASGITransport(app=build_management_app(management))
    async with httpx.AsyncClient(transport=transport, base_url="http://mgmt") as c:
        assert (await apps(c)).status_code == 200
        assert "securitySchemes" not in (await c.get("/openapi.json")).json().get("components", {})
    await management.close()
