"""Frontends sharing the query port (SO_REUSEPORT) each register a port of their own, so a scrape of one
frontend's metrics reads that frontend, never whichever peer the kernel picked."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import requests

from clipper.config.store import ConfigStore
from clipper.frontends.metrics_targets import target_groups
from clipper.schema import Frontend
from tests.conftest import free_port, wait_until
from tests.frontends.conftest import QueryCluster


def _registered(redis_url: str) -> list[Frontend]:
    async def read() -> list[Frontend]:
        async with ConfigStore(redis_url) as store:
            return await store.list_frontends()

    return asyncio.run(read())


def _frontend_of(metrics_text: str) -> str:
    found = re.search(r'clipper_frontend_info\{frontend="([^"]+)"\} 1', metrics_text)
    assert found, metrics_text[:500]
    return found.group(1)


def test_frontends_on_one_query_port_are_scraped_each_on_its_own(
    make_cluster: Callable[..., QueryCluster], redis_url: str
) -> None:
    shared = str(free_port())
    for name in ("fe-a", "fe-b"):
        make_cluster(CLIPPER_HTTP_PORT=shared, CLIPPER_FRONTEND_ID=name)
    # /health on the shared port may be answered by the first: wait for the second's registration.
    wait_until(lambda: len(_registered(redis_url)) == 2, what="both frontends registered")
    frontends = {f.frontend_id: f for f in _registered(redis_url)}
    assert set(frontends) == {"fe-a", "fe-b"}
    assert {f.http_address for f in frontends.values()} == {f"127.0.0.1:{shared}"}
    own = {f.metrics_address for f in frontends.values()}
    assert len(own) == 2 and all(a and not a.endswith(f":{shared}") for a in own)
    for _ in range(5):  # the shared port answers for either; the own port always for the one
        for fid, frontend in frontends.items():
            text = requests.get(f"http://{frontend.scrape_address}/metrics", timeout=5).text
            assert _frontend_of(text) == fid
    targets = target_groups(list(frontends.values()))
    assert sorted(t.targets[0] for t in targets) == sorted(a for a in own if a)
    assert sorted(t.labels["clipper_frontend"] for t in targets) == ["fe-a", "fe-b"]


def test_a_frontend_registered_without_its_own_port_is_scraped_on_the_query_port() -> None:
    """Records written by a frontend of an earlier version (no metrics_address) still work."""
    old = Frontend(frontend_id="fe-old", rpc_address="127.0.0.1:7000", http_address="127.0.0.1:1337")
    assert old.scrape_address == "127.0.0.1:1337"
    assert [t.targets for t in target_groups([old])] == [["127.0.0.1:1337"]]
