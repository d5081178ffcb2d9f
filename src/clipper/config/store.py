"""ConfigStore: typed reads and writes of apps, models, links and containers in Clipper's Redis layout.

Layout (reference §5): DB 1 app state, DB 2 models `<name>:<version>`, DB 3 containers
`<name>,<version>,<replica>`, DB 5 apps, DB 6 `CURRENT_MODEL_VERSION:<name>`, DB 7 links (sets).
DB 8 is ours: live query frontends, each a hash with a TTL refreshed by its heartbeat.
Replica ids come from one Redis counter per model version, so frontends never overwrite each other.
A model-selection policy other than Clipper's adds the app field `policy_params` (JSON), per-user state keys
`<app>:<uid>:0` and several links per app; an app on the default policy keeps Clipper's layout exactly.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from clipper.config.selection_state import (
    GLOBAL_UID,
    KeyedLocks,
    SelectionUpdate,
    selection_of,
    state_key,
    update_selection,
)
from clipper.schema import App, Container, Frontend, Model
from clipper.selection import DEFAULT_POLICY

logger = logging.getLogger(__name__)


class Db(enum.IntEnum):
    """Clipper's logical databases, plus our frontend registry."""

    STATE = 1
    MODELS = 2
    CONTAINERS = 3
    APPS = 5
    METADATA = 6
    LINKS = 7
    FRONTENDS = 8


CURRENT_VERSION_PREFIX = "CURRENT_MODEL_VERSION:"
REPLICA_COUNTER_PREFIX = "REPLICA_COUNTER:"
MAX_CONNECTIONS_PER_DB = 16


@dataclass(slots=True, frozen=True)
class ConfigEvent:
    """One change in the store: which database, which key, which Redis operation."""

    db: Db
    key: str
    op: str


class ConfigStore:
    """Async access to one cluster's config store. Constructing it does no I/O; `start()` connects."""

    def __init__(self, redis_url: str, password: str | None = None) -> None:
        """`password` is kept apart from the URL, so `address` and the logs never carry it."""
        self.redis_url = redis_url
        self._password = password
        self._dbs: dict[Db, aioredis.Redis] = {}
        self._tx: aioredis.Redis | None = None
        self._state_locks = KeyedLocks()

    async def start(self) -> None:
        for db in Db:
            # A bounded pool that waits for a free connection: a burst of a thousand container
            # registrations or removals queues here instead of failing with MaxConnectionsError.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.redis_url,
                db=int(db),
                decode_responses=True,
                max_connections=MAX_CONNECTIONS_PER_DB,
                password=self._password,
                retry=_reconnecting(),
            )
            self._dbs[db] = aioredis.Redis(connection_pool=pool)
        self._tx = aioredis.Redis.from_url(
            self.redis_url, db=0, decode_responses=True, password=self._password, retry=_reconnecting()
        )
        await self._tx.ping()

    async def start_retrying(self, retry_interval_s: float) -> None:
        """Connect, retrying forever (as Clipper's frontends do) and saying so in the log while waiting."""
        attempt = 0
        while True:
            try:
                await self.start()
            except (RedisError, OSError) as e:
                await self.close()
                if attempt % 10 == 0:
                    logger.warning(
                        "Waiting for Redis at %s (%s); retrying every %.1f s",
                        self.address,
                        e,
                        retry_interval_s,
                    )
                attempt += 1
                await asyncio.sleep(retry_interval_s)
            else:
                logger.info("Connected to Redis at %s", self.address)
                return

    @property
    def address(self) -> str:
        """The store's URL without credentials, for logs and error messages."""
        parts = urlsplit(self.redis_url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))

    async def close(self) -> None:
        for client in [*self._dbs.values(), *([self._tx] if self._tx else [])]:
            await client.aclose()
        self._dbs.clear()
        self._tx = None

    async def __aenter__(self) -> ConfigStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def db(self, db: Db) -> aioredis.Redis:
        return self._dbs[db]

    async def _transaction(self, ops: Iterable[tuple[Db, tuple[Any, ...]]]) -> None:
        """Run commands on several databases in one MULTI/EXEC: all of them happen, or none."""
        assert self._tx is not None, "ConfigStore.start() was not called"
        async with self._tx.pipeline(transaction=True) as pipe:
            current: int | None = None
            for db, command in ops:
                if current != int(db):
                    pipe.execute_command("SELECT", int(db))
                    current = int(db)
                pipe.execute_command(*command)
            pipe.execute_command("SELECT", 0)
            await pipe.execute()

    async def _hash(self, db: Db, key: str) -> dict[str, str]:
        """A hash's fields; the clients decode responses, so keys and values are str."""
        return cast(dict[str, str], await self._dbs[db].hgetall(key))

    async def _scan(self, db: Db, match: str = "*") -> list[str]:
        return sorted([key async for key in self._dbs[db].scan_iter(match=match, count=1000)])

    # --- applications -----------------------------------------------------------------------

    async def get_app(self, name: str) -> App | None:
        fields = await self._hash(Db.APPS, name)
        if not fields:
            return None
        return App(
            name=name,
            input_type=fields["input_type"],
            default_output=fields["default_output"],
            latency_slo_micros=int(fields["latency_slo_micros"]),
            policy=fields.get("policy", DEFAULT_POLICY),
            policy_params=orjson.loads(fields.get("policy_params", "{}")),
            on_overload=fields.get("on_overload", "reject"),
            input_shape=_shape_from_field(fields.get("input_shape")),
        )

    async def list_app_names(self) -> list[str]:
        return await self._scan(Db.APPS)

    async def add_app(self, app: App) -> None:
        """Write the app hash and its selection state (DB 1 `<app>:0:0`) together."""
        fields = {
            "input_type": app.input_type,
            "policy": app.policy,
            "default_output": app.default_output,
            "latency_slo_micros": str(app.latency_slo_micros),
        }
        if app.on_overload != "reject":  # our field; written only when set, so the hash stays Clipper's
            fields["on_overload"] = app.on_overload
        if app.policy != DEFAULT_POLICY:  # ours too
            fields["policy_params"] = orjson.dumps(app.policy_params).decode()
        if app.input_shape is not None:  # ours too
            fields["input_shape"] = _shape_field(app.input_shape)
        state = orjson.dumps({"y_hat": app.default_output}).decode()
        flat = [x for kv in fields.items() for x in kv]
        await self._transaction(
            [
                (Db.STATE, ("SET", state_key(app.name, GLOBAL_UID), state)),
                (Db.APPS, ("HSET", app.name, *flat)),
            ]
        )

    async def delete_app(self, name: str) -> None:
        """Delete the app with its links and every state (global and per user), so a re-created app starts
        clean (Clipper bug #774)."""
        states = await self._state_keys(name)
        await self._transaction(
            [(Db.LINKS, ("DEL", name)), *((Db.STATE, ("DEL", k)) for k in states), (Db.APPS, ("DEL", name))]
        )

    async def set_app_policy(
        self, name: str, policy: str, params: dict[str, Any], *, reset_state: bool
    ) -> None:
        """Store the app's policy and params in one transaction; `reset_state` also forgets what the old
        policy learned (per-user keys go, the global key keeps only `y_hat`).

        The default policy drops `policy_params`, so the hash is Clipper's again. A per-user key first
        written between the scan and the transaction survives the reset: feedback racing a policy change.
        """
        ops: list[tuple[Db, tuple[Any, ...]]] = []
        if policy == DEFAULT_POLICY:
            ops.append((Db.APPS, ("HDEL", name, "policy_params")))
            ops.append((Db.APPS, ("HSET", name, "policy", policy)))
        else:
            ops.append((Db.APPS, ("HSET", name, "policy", policy, "policy_params", orjson.dumps(params))))
        if reset_state:
            global_key = state_key(name, GLOBAL_UID)
            y_hat = await self.get_state(name)
            for key in await self._state_keys(name):
                if key != global_key:
                    ops.append((Db.STATE, ("DEL", key)))
            if y_hat is not None:
                ops.append((Db.STATE, ("SET", global_key, orjson.dumps({"y_hat": y_hat}))))
        await self._transaction(ops)

    async def get_state(self, app_name: str) -> str | None:
        """The app's default output as its global selection state holds it (Clipper's `y_hat`)."""
        raw = await self._dbs[Db.STATE].get(state_key(app_name, GLOBAL_UID))
        if raw is None:
            return None
        return str(orjson.loads(raw)["y_hat"])

    async def get_selection_state(self, app: str, uid: str) -> dict[str, Any] | None:
        """The policy state of (app, uid), uid "0" being the app's global one; None before any update."""
        return selection_of(await self._dbs[Db.STATE].get(state_key(app, uid)))

    async def update_selection_state(self, app: str, uid: str, update: SelectionUpdate) -> dict[str, Any]:
        """Replace the policy state of (app, uid) with `update(old)` atomically (`old` None before any);
        concurrent updaters never lose one, and `update` may run more than once. Returns the new state."""
        async with self._state_locks.hold(state_key(app, uid)):
            return await update_selection(self._dbs[Db.STATE], app, uid, update)

    async def _state_keys(self, app: str) -> list[str]:
        """Every selection-state key of the app: `<app>:<uid>:0` for uid 0 and each user."""
        return await self._scan(Db.STATE, f"{_escape(app)}:*")

    # --- links ------------------------------------------------------------------------------

    async def get_links(self, app_name: str) -> list[str]:
        return sorted(cast(set[str], await self._dbs[Db.LINKS].smembers(app_name)))

    async def add_link(self, app_name: str, model_name: str) -> None:
        await self._dbs[Db.LINKS].sadd(app_name, model_name)

    async def remove_link(self, app_name: str, model_name: str) -> None:
        await self._dbs[Db.LINKS].srem(app_name, model_name)

    async def apps_linked_to(self, model_name: str) -> list[str]:
        names = await self.list_app_names()
        return [a for a in names if await self._dbs[Db.LINKS].sismember(a, model_name)]

    # --- models -----------------------------------------------------------------------------

    async def get_model(self, name: str, version: str) -> Model | None:
        fields = await self._hash(Db.MODELS, f"{name}:{version}")
        if not fields or "valid" not in fields:
            return None
        return _model_from_fields(fields)

    async def list_models(self) -> list[Model]:
        models = []
        for key in await self._scan(Db.MODELS):
            fields = await self._hash(Db.MODELS, key)
            if fields and "valid" in fields:
                models.append(_model_from_fields(fields))
        return models

    async def model_versions(self, name: str) -> list[str]:
        keys = await self._scan(Db.MODELS, f"{_escape(name)}:*")
        return [k.split(":", 1)[1] for k in keys if k.split(":", 1)[0] == name]

    async def add_model(self, model: Model) -> None:
        """Write a model version and make it current, atomically (Clipper makes a new version current)."""
        fields = {
            "model_name": model.model_name,
            "model_version": model.model_version,
            "load": "0.000000",
            "input_type": model.input_type,
            "labels": ",".join(model.labels),
            "container_name": model.container_name,
            "model_data_path": model.model_data_path,
            "batch_size": str(model.batch_size),
            "valid": "",
        }
        if model.input_shape is not None:  # ours; Clipper's tools ignore the extra field
            fields["input_shape"] = _shape_field(model.input_shape)
        flat = [x for kv in fields.items() for x in kv]
        await self._transaction(
            [
                (Db.MODELS, ("HSET", model.model_id, *flat)),
                (Db.METADATA, ("SET", CURRENT_VERSION_PREFIX + model.model_name, model.model_version)),
            ]
        )

    async def delete_model(self, name: str, version: str) -> None:
        """Delete a version and its container records; the management side does it, no frontend needed.

        With the last version goes the current pointer (nothing is left to point at); while other versions
        remain, the pointer is left for the operator to move, even if it named this one (as Clipper does).
        """
        containers = await self._scan(Db.CONTAINERS, f"{_escape(name)},{_escape(version)},*")
        ops: list[tuple[Db, tuple[Any, ...]]] = [(Db.MODELS, ("DEL", f"{name}:{version}"))]
        ops += [(Db.CONTAINERS, ("DEL", key)) for key in containers]
        if not [v for v in await self.model_versions(name) if v != version]:
            ops.append((Db.METADATA, ("DEL", CURRENT_VERSION_PREFIX + name)))
        await self._transaction(ops)

    async def get_current_version(self, name: str) -> str | None:
        return cast(str | None, await self._dbs[Db.METADATA].get(CURRENT_VERSION_PREFIX + name))

    async def set_current_version(self, name: str, version: str) -> None:
        await self._dbs[Db.METADATA].set(CURRENT_VERSION_PREFIX + name, version)

    # --- containers -------------------------------------------------------------------------

    async def next_replica_id(self, name: str, version: str) -> int:
        """A replica id unique across every frontend and restart of this cluster."""
        return int(await self._dbs[Db.METADATA].incr(f"{REPLICA_COUNTER_PREFIX}{name}:{version}")) - 1

    async def add_container(self, container: Container) -> None:
        await self._dbs[Db.CONTAINERS].hset(
            container.key,
            mapping={
                "model_id": container.model_id,
                "model_name": container.model_name,
                "model_version": container.model_version,
                "model_replica_id": str(container.model_replica_id),
                "zmq_connection_id": str(container.zmq_connection_id),
                "batch_size": "1",
                "input_type": container.input_type,
                "frontend_id": container.frontend_id,
            },
        )

    async def remove_containers(self, replicas: Iterable[tuple[str, str, int]]) -> None:
        """Delete the records of (model, version, replica id) triples in one command."""
        keys = [f"{name},{version},{replica_id}" for name, version, replica_id in replicas]
        if keys:
            await self._dbs[Db.CONTAINERS].delete(*keys)

    async def get_container(self, name: str, version: str, replica_id: int) -> Container | None:
        fields = await self._hash(Db.CONTAINERS, f"{name},{version},{replica_id}")
        return _container_from_fields(fields) if fields else None

    async def list_containers(self) -> list[Container]:
        out = []
        for key in await self._scan(Db.CONTAINERS):
            fields = await self._hash(Db.CONTAINERS, key)
            if fields:
                out.append(_container_from_fields(fields))
        return sorted(out, key=lambda c: (c.model_name, c.model_version, c.model_replica_id))

    async def remove_frontend_containers(self, frontend_id: str) -> None:
        """Forget every container record a frontend wrote (on its start and clean exit)."""
        stale = [c.key for c in await self.list_containers() if c.frontend_id == frontend_id]
        if stale:
            await self._dbs[Db.CONTAINERS].delete(*stale)

    # --- query frontends --------------------------------------------------------------------

    async def register_frontend(self, frontend: Frontend, ttl_ms: int) -> None:
        """Add or refresh a live frontend; it disappears `ttl_ms` after its last refresh.

        A refresh of a live entry only moves its expiry, so followers, which re-read the registry on
        writes (not on expiry moves), are not woken by every heartbeat of every frontend.
        """
        client = self._dbs[Db.FRONTENDS]
        if await client.pexpire(frontend.frontend_id, ttl_ms):
            return
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset(frontend.frontend_id, mapping={"rpc_address": frontend.rpc_address,
                                                     "http_address": frontend.http_address})  # fmt: skip
            if frontend.metrics_address is not None:
                pipe.hset(frontend.frontend_id, "metrics_address", frontend.metrics_address)
            pipe.pexpire(frontend.frontend_id, ttl_ms)
            await pipe.execute()

    async def deregister_frontend(self, frontend_id: str) -> None:
        await self._dbs[Db.FRONTENDS].delete(frontend_id)

    async def list_frontends(self) -> list[Frontend]:
        out = []
        for key in await self._scan(Db.FRONTENDS):
            fields = await self._hash(Db.FRONTENDS, key)
            if fields:
                out.append(Frontend(frontend_id=key, rpc_address=fields["rpc_address"],
                                    http_address=fields["http_address"],
                                    metrics_address=fields.get("metrics_address")))  # fmt: skip
        return out

    # --- change events ----------------------------------------------------------------------

    async def enable_notifications(self) -> None:
        """Ask Redis for keyspace events; raise a clear error where the server refuses CONFIG."""
        try:
            await self._dbs[Db.APPS].config_set("notify-keyspace-events", "AKE")
        except aioredis.ResponseError as e:
            raise RuntimeError(
                "Redis refused 'CONFIG SET notify-keyspace-events AKE'; enable keyspace notifications "
                f"on the server (notify-keyspace-events AKE) and restart the frontend: {e}"
            ) from e

    async def watch(self, subscribed: asyncio.Event | None = None) -> AsyncIterator[ConfigEvent]:
        """Yield every change to apps, links, versions, models and frontends, forever.

        `subscribed` is set once no later change can be missed, so a caller can load a snapshot then.
        """
        pubsub = self._dbs[Db.APPS].pubsub()
        watched = (Db.STATE, Db.MODELS, Db.APPS, Db.METADATA, Db.LINKS, Db.FRONTENDS)  # STATE: selection
        await pubsub.psubscribe(*(f"__keyspace@{int(db)}__:*" for db in watched))
        if subscribed is not None:
            subscribed.set()
        try:
            async for message in pubsub.listen():
                if message["type"] != "pmessage":
                    continue
                channel: str = message["channel"]
                prefix, key = channel.split("__:", 1)
                yield ConfigEvent(Db(int(prefix.rsplit("@", 1)[1])), key, message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]


def _reconnecting() -> Retry:
    """Retry a command on a fresh connection when Redis dropped the pooled one (it restarted): after a
    restart each idle pooled connection fails once, and without this every one becomes a client's 503."""
    return Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3)


def _escape(pattern: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in pattern)


def _model_from_fields(fields: dict[str, str]) -> Model:
    return Model(
        model_name=fields["model_name"],
        model_version=fields["model_version"],
        input_type=fields["input_type"],
        labels=fields.get("labels", "").split(","),
        container_name=fields.get("container_name", ""),
        model_data_path=fields.get("model_data_path", ""),
        batch_size=int(fields.get("batch_size", "-1")),
        input_shape=_shape_from_field(fields.get("input_shape")),
    )


def _shape_field(shape: list[int]) -> str:
    """A declared input shape as its hash field, comma-separated as `CLIPPER_INPUT_SHAPE` spells it."""
    return ",".join(map(str, shape))


def _shape_from_field(value: str | None) -> list[int] | None:
    return [int(n) for n in value.split(",")] if value else None


def _container_from_fields(fields: dict[str, str]) -> Container:
    return Container(
        model_name=fields["model_name"],
        model_version=fields["model_version"],
        model_replica_id=int(fields["model_replica_id"]),
        input_type=fields["input_type"],
        frontend_id=fields.get("frontend_id", ""),
        zmq_connection_id=int(fields.get("zmq_connection_id", "0")),
    )
