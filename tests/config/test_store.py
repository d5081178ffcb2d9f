"""ConfigStore on a real Redis: Clipper's layout, cross-DB transactions, replica ids, registry, events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from clipper.config.store import ConfigEvent, ConfigStore, Db
from clipper.errors import UnknownApp
from clipper.schema import App, Container, Frontend, Model


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[ConfigStore]:
    async with ConfigStore(redis_url) as s:
        yield s


async def raw(redis_url: str, db: int) -> aioredis.Redis:
    return aioredis.Redis.from_url(redis_url, db=db, decode_responses=True)


def app(name: str = "app", input_type: str = "doubles") -> App:
    return App(name=name, input_type=input_type, default_output="-1.0", latency_slo_micros=20_000)


def model(name: str = "m", version: str = "1") -> Model:
    return Model(
        model_name=name, model_version=version, input_type="doubles", labels=["x", "y"], batch_size=4
    )


def container(version: str = "1", replica: int = 0, frontend: str = "fe") -> Container:
    return Container(
        model_name="m",
        model_version=version,
        model_replica_id=replica,
        input_type="doubles",
        frontend_id=frontend,
    )


async def test_add_app_writes_clippers_layout_across_dbs(store: ConfigStore, redis_url: str) -> None:
    await store.add_app(app())
    apps, state = await raw(redis_url, 5), await raw(redis_url, 1)
    assert await apps.hgetall("app") == {
        "input_type": "doubles",
        "policy": "DefaultOutputSelectionPolicy",
        "default_output": "-1.0",
        "latency_slo_micros": "20000",
    }
    assert await state.get("app:0:0") == '{"y_hat":"-1.0"}'
    assert await store.get_app("app") == app() and await store.get_state("app") == "-1.0"
    await apps.aclose()
    await state.aclose()


async def test_delete_app_removes_hash_links_and_state_together(store: ConfigStore) -> None:
    await store.add_app(app())
    await store.add_link("app", "m")
    await store.delete_app("app")
    for db in (Db.APPS, Db.LINKS, Db.STATE):
        assert await store.db(db).dbsize() == 0, db
    assert await store.get_app("app") is None and await store.get_links("app") == []


async def test_transaction_leaves_the_connection_on_db_0(store: ConfigStore, redis_url: str) -> None:
    """Each transaction SELECTs its databases and ends on DB 0, so the next one starts from a known DB."""
    await store.add_app(app())
    await store.add_model(model())
    await store.add_app(app("other"))
    assert await store.list_app_names() == ["app", "other"]
    assert await store.db(Db.MODELS).keys() == ["m:1"]
    db0 = await raw(redis_url, 0)
    assert await db0.dbsize() == 0
    await db0.aclose()


async def test_add_model_is_current_at_once_and_round_trips(store: ConfigStore, redis_url: str) -> None:
    await store.add_model(model())
    await store.add_model(model(version="2"))
    assert await store.get_current_version("m") == "2"
    assert await store.get_model("m", "1") == model()
    assert [m.model_id for m in await store.list_models()] == ["m:1", "m:2"]
    models = await raw(redis_url, 2)
    fields = await models.hgetall("m:1")
    assert fields["labels"] == "x,y" and fields["valid"] == "" and fields["batch_size"] == "4"
    await models.aclose()


async def test_model_versions_match_the_name_exactly(store: ConfigStore) -> None:
    for name, version in (("m", "1"), ("m", "2"), ("m*", "9"), ("mm", "3")):
        await store.add_model(model(name, version))
    assert await store.model_versions("m") == ["1", "2"]
    assert await store.model_versions("m*") == ["9"]


async def test_delete_model_takes_its_containers_and_last_pointer(store: ConfigStore) -> None:
    await store.add_model(model(version="1"))
    await store.add_model(model(version="2"))
    await store.add_container(container("2", 0))
    await store.add_container(container("1", 0))
    await store.delete_model("m", "2")
    assert [c.model_version for c in await store.list_containers()] == ["1"]
    assert await store.get_current_version("m") == "2"  # other versions remain: the pointer stays
    await store.delete_model("m", "1")
    assert await store.get_current_version("m") is None
    assert await store.list_containers() == [] and await store.model_versions("m") == []


async def test_replica_ids_are_unique_across_stores(redis_url: str) -> None:
    """Two frontends asking at once never get the same id; each version counts from 0."""
    async with ConfigStore(redis_url) as a, ConfigStore(redis_url) as b:
        ids = await asyncio.gather(*(s.next_replica_id("m", "1") for s in [a, b] * 25))
        assert sorted(ids) == list(range(50))
        assert await a.next_replica_id("m", "2") == 0


async def test_container_records(store: ConfigStore) -> None:
    await store.add_container(container("1", 0, "fe-a"))
    await store.add_container(container("1", 1, "fe-b"))
    assert await store.get_container("m", "1", 1) == container("1", 1, "fe-b")
    assert await store.get_container("m", "1", 7) is None
    await store.remove_frontend_containers("fe-a")
    assert await store.list_containers() == [container("1", 1, "fe-b")]
    await store.remove_containers([("m", "1", 1)])
    assert await store.list_containers() == []


async def test_frontend_registry_expires_without_refresh(store: ConfigStore) -> None:
    fe = Frontend(frontend_id="fe-1", rpc_address="127.0.0.1:7000", http_address="127.0.0.1:1337")
    await store.register_frontend(fe, ttl_ms=60_000)
    assert await store.list_frontends() == [fe]
    assert 0 < await store.db(Db.FRONTENDS).pttl("fe-1") <= 60_000
    await store.register_frontend(fe, ttl_ms=300)  # a refresh resets the lifetime
    assert await store.db(Db.FRONTENDS).pttl("fe-1") <= 300
    deadline = time.monotonic() + 10
    while await store.list_frontends():
        assert time.monotonic() < deadline, "registry entry did not expire"
        await asyncio.sleep(0.05)
    await store.register_frontend(fe, ttl_ms=60_000)
    await store.deregister_frontend("fe-1")
    assert await store.list_frontends() == []


async def test_watch_yields_app_and_link_events(store: ConfigStore) -> None:
    await store.enable_notifications()
    events: asyncio.Queue[ConfigEvent] = asyncio.Queue(maxsize=1000)
    subscribed = asyncio.Event()

    async def follow() -> None:
        async for event in store.watch(subscribed):
            events.put_nowait(event)

    follower = asyncio.create_task(follow())
    try:
        async with asyncio.timeout(10):
            await subscribed.wait()  # set by watch once no later change can be missed
        await store.add_app(app())
        await store.add_link("app", "m")
        await store.remove_link("app", "m")
        wanted = [
            ConfigEvent(Db.APPS, "app", "hset"),
            ConfigEvent(Db.LINKS, "app", "sadd"),
            ConfigEvent(Db.LINKS, "app", "srem"),
        ]
        seen: list[ConfigEvent] = []
        async with asyncio.timeout(10):
            while not all(w in seen for w in wanted):
                seen.append(await events.get())
        assert [e for e in seen if e in wanted] == wanted  # in write order
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower


# --- model selection: policy params, selection state, several links ----------------------------


CLIPPER_APP_HASH = {
    "input_type": "doubles",
    "policy": "DefaultOutputSelectionPolicy",
    "default_output": "-1.0",
    "latency_slo_micros": "20000",
}


async def test_policy_params_are_ours_and_go_with_the_default_policy(
    store: ConfigStore, redis_url: str
) -> None:
    """A non-default policy adds `policy_params`; back on the default, the hash is Clipper's again."""
    await store.add_app(app())
    apps = await raw(redis_url, 5)
    await store.set_app_policy("app", "split", {"weights": {"a": 0.9, "b": 0.1}}, reset_state=True)
    assert await apps.hgetall("app") == CLIPPER_APP_HASH | {
        "policy": "split",
        "policy_params": '{"weights":{"a":0.9,"b":0.1}}',
    }
    stored = await store.get_app("app")
    assert stored is not None and (stored.policy, stored.policy_params) == (
        "split",
        {"weights": {"a": 0.9, "b": 0.1}},
    )
    await store.set_app_policy("app", "DefaultOutputSelectionPolicy", {}, reset_state=True)
    assert await apps.hgetall("app") == CLIPPER_APP_HASH
    assert await store.get_app("app") == app()
    await apps.aclose()


async def test_an_app_may_link_several_models(store: ConfigStore) -> None:
    await store.add_app(app())
    for name in ("b", "a", "c"):
        await store.add_link("app", name)
    await store.remove_link("app", "c")
    assert await store.get_links("app") == ["a", "b"]
    assert await store.apps_linked_to("b") == ["app"]


async def test_selection_state_keeps_clippers_y_hat_per_user_too(store: ConfigStore, redis_url: str) -> None:
    await store.add_app(app())
    assert await store.get_selection_state("app", "0") is None
    assert await store.get_selection_state("app", "42") is None
    new = await store.update_selection_state("app", "0", lambda old: {"weights": {"a": 1.0}, "was": old})
    assert new == {"weights": {"a": 1.0}, "was": None}
    await store.update_selection_state("app", "42", lambda old: {"n": 1 if old is None else old["n"] + 1})
    await store.update_selection_state("app", "42", lambda old: {"n": 1 if old is None else old["n"] + 1})
    assert await store.get_selection_state("app", "42") == {"n": 2}
    assert await store.get_selection_state("app", "0") == {"weights": {"a": 1.0}, "was": None}
    assert await store.get_state("app") == "-1.0"  # Clipper's reader still finds the default output
    state = await raw(redis_url, 1)
    assert orjson.loads(await state.get("app:42:0") or "null") == {"y_hat": "-1.0", "selection": {"n": 2}}
    assert orjson.loads(await state.get("app:0:0") or "null")["y_hat"] == "-1.0"
    await state.aclose()


async def test_selection_state_of_an_unknown_app_is_refused(store: ConfigStore) -> None:
    with pytest.raises(UnknownApp, match="'nope'"):
        await store.update_selection_state("nope", "7", lambda old: {"n": 1})
    assert await store.db(Db.STATE).dbsize() == 0


async def test_concurrent_selection_updates_never_lose_one(redis_url: str) -> None:
    """Two stores (two frontends) add to one counter at once: every increment survives."""

    def increment(old: dict[str, Any] | None) -> dict[str, Any]:
        return {"n": (old or {"n": 0})["n"] + 1}

    async with ConfigStore(redis_url) as a, ConfigStore(redis_url) as b:
        await a.add_app(app())
        for uid in ("0", "9"):
            await asyncio.gather(*(s.update_selection_state("app", uid, increment) for s in [a, b] * 100))
            assert await a.get_selection_state("app", uid) == {"n": 200}, uid


async def test_policy_change_forgets_learned_state_and_delete_app_every_user(store: ConfigStore) -> None:
    await store.add_app(app())
    await store.add_app(app("app-2"))
    for name in ("app", "app-2"):
        for uid in ("0", "5", "6"):
            await store.update_selection_state(name, uid, lambda old: {"learned": True})
    await store.set_app_policy("app", "exp3", {"gamma": 0.2}, reset_state=False)
    assert await store.get_selection_state("app", "5") == {"learned": True}
    await store.set_app_policy("app", "exp4", {}, reset_state=True)
    assert [await store.get_selection_state("app", uid) for uid in ("0", "5", "6")] == [None] * 3
    assert await store.get_state("app") == "-1.0"
    assert await store.db(Db.STATE).keys("app:*") == ["app:0:0"]
    await store.delete_app("app-2")
    assert await store.db(Db.STATE).keys("*") == ["app:0:0"]  # app-2's users went with it, app's stayed
