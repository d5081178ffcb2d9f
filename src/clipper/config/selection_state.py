"""Selection state in DB 1, Clipper's `<app>:<uid>:0` keys: Clipper's `{"y_hat": <default output>}` plus our
`"selection"` (a policy's state as JSON), changed by optimistic read-modify-write so no update is lost.

uid `0` is the app's global state, written with the app; a per-user key is created by its first update
and copies `y_hat` from the global one, so every key stays readable by Clipper's frontend.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from clipper.errors import UnknownApp

GLOBAL_UID = "0"
SELECTION = "selection"

SelectionUpdate = Callable[[dict[str, Any] | None], dict[str, Any]]


def state_key(app: str, uid: str) -> str:
    """Clipper's key of a selection state (the model-hash part is always 0)."""
    return f"{app}:{uid}:0"


def selection_of(raw: str | bytes | None) -> dict[str, Any] | None:
    """The policy state held in a stored value, or None when the key or its `selection` is absent."""
    if raw is None:
        return None
    selection = orjson.loads(raw).get(SELECTION)
    return selection if isinstance(selection, dict) else None


async def update_selection(
    client: aioredis.Redis, app: str, uid: str, update: SelectionUpdate
) -> dict[str, Any]:
    """Apply `update` to the state of (app, uid) atomically and return the new state.

    WATCH both the key and the app's global key (deleting the app changes it), compute outside Redis,
    and retry when another writer got in between; `update` may therefore run more than once.
    Raises UnknownApp when the app has no global state (it was never added, or was deleted).
    """
    key, global_key = state_key(app, uid), state_key(app, GLOBAL_UID)
    async with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(key, global_key)
                global_raw = await pipe.get(global_key)
                if global_raw is None:
                    raise UnknownApp(f"No application with name '{app}' exists (it has no selection state)")
                raw = global_raw if key == global_key else await pipe.get(key)
                new = update(selection_of(raw))
                y_hat = orjson.loads(global_raw)["y_hat"]
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(key, orjson.dumps({"y_hat": y_hat, SELECTION: new}))
                await pipe.execute()
                return new
            except WatchError:
                continue


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it.

    Updates of one key from one process take turns, so WATCH retries happen only between processes:
    32 concurrent updaters of one key from two stores cost ~24 attempts per update without it.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]
