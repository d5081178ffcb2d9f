"""Keeps a query frontend's in-memory view of apps, links, versions and models in step with the store.

It subscribes first, then loads a snapshot, then applies each change by re-reading the changed key, so a
change made while it loads is never lost and a repeated event is harmless. When the store goes away (Redis
restarted), it subscribes again and reloads the snapshot the same way, since no event told it of changes
made meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from redis.exceptions import RedisError

from clipper.config.store import CURRENT_VERSION_PREFIX, ConfigEvent, ConfigStore, Db
from clipper.query.answers import embed_json
from clipper.query.processor import AppRoute, QueryProcessor
from clipper.query.selecting import GLOBAL_UID, Selection
from clipper.selection import DEFAULT_POLICY, make_policy
from clipper.types import InputType

logger = logging.getLogger(__name__)

RESUBSCRIBE_INTERVAL_S = 0.2
SYNC_TIMEOUT_S = 10.0


class ConfigFollower:
    """Owns the task that applies config-store events to a QueryProcessor."""

    def __init__(
        self,
        store: ConfigStore,
        processor: QueryProcessor,
        on_frontends: Callable[[list[str]], None],
        selection_seed: int | None = None,
    ) -> None:
        """`selection_seed` makes each app's policy draws reproducible (None: seeded by the OS)."""
        self._store = store
        self._processor = processor
        self._on_frontends = on_frontends
        self._seed = selection_seed
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe and load the snapshot; return once the processor holds the whole configuration."""
        await self._store.enable_notifications()
        events, pending = await self._resync()
        self._task = asyncio.create_task(self._follow(events, pending))

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Stop following; a Redis call stuck in cancellation is abandoned after `timeout_s`."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=timeout_s)

    async def _resync(self) -> tuple[AsyncIterator[ConfigEvent], asyncio.Task[ConfigEvent]]:
        """Subscribe, then load the snapshot; return the events and the read of the first one.

        Events that arrive while the snapshot loads wait in the subscription's socket, so none is lost.
        """
        subscribed = asyncio.Event()
        events = self._store.watch(subscribed)
        pending = asyncio.ensure_future(anext(events))
        try:
            waiter = asyncio.ensure_future(subscribed.wait())
            try:
                await asyncio.wait(
                    {pending, waiter}, timeout=SYNC_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
            if pending.done():
                pending.result()  # subscribing failed: raise why
            if not subscribed.is_set():
                raise TimeoutError(f"subscribing to config store events took over {SYNC_TIMEOUT_S:.0f} s")
            await asyncio.wait_for(self.reload_all(), SYNC_TIMEOUT_S)
        except BaseException:
            await _cancel(pending)
            raise
        return events, pending

    async def _follow(self, events: AsyncIterator[ConfigEvent], pending: asyncio.Task[ConfigEvent]) -> None:
        """Apply events forever; when the store is lost, subscribe again and reload the snapshot."""
        while True:
            try:
                await self._apply_all(events, pending)
            except (RedisError, OSError) as e:
                logger.warning("Lost the config store's change events (%s); subscribing again", e)
            while True:
                await asyncio.sleep(RESUBSCRIBE_INTERVAL_S)
                try:
                    await self._store.enable_notifications()  # in case Redis restarted without them
                    events, pending = await self._resync()
                except (RedisError, OSError) as e:
                    logger.debug("Config store still unavailable: %s", e)
                    continue
                logger.info("Following the config store again; configuration reloaded")
                break

    async def _apply_all(
        self, events: AsyncIterator[ConfigEvent], pending: asyncio.Task[ConfigEvent]
    ) -> None:
        """Apply each event as it arrives, until the subscription or a re-read raises a RedisError."""
        try:
            while True:
                event = await pending
                pending = asyncio.ensure_future(anext(events))
                try:
                    await self.apply(event)
                except (RedisError, OSError):
                    raise
                except Exception:  # a bad record must not stop the frontend from following later changes
                    logger.exception("Could not apply config change %s", event)
        finally:
            await _cancel(pending)

    async def reload_all(self) -> None:
        store = self._store
        models = await store.list_models()
        for model in models:
            self._processor.set_model(model.model_name, model.model_version, model.batch_size)
        for name in {m.model_name for m in models}:
            self._processor.set_current_version(name, await store.get_current_version(name))
        for app in await store.list_app_names():
            await self._reload_app(app)
        await self._reload_frontends()

    async def _reload_frontends(self) -> None:
        self._on_frontends(sorted(f.rpc_address for f in await self._store.list_frontends()))

    async def apply(self, event: ConfigEvent) -> None:
        """Re-read whatever the event touched."""
        if event.db is Db.APPS or event.db is Db.LINKS:  # the route holds the app's models (a policy's too)
            await self._reload_app(event.key)
        elif event.db is Db.STATE and event.key.count(":") >= 2:  # `<app>:<uid>:0`: a policy learned
            app, uid, _ = event.key.rsplit(":", 2)
            self._processor.set_selection_state(app, uid, await self._store.get_selection_state(app, uid))
        elif event.db is Db.METADATA and event.key.startswith(CURRENT_VERSION_PREFIX):
            name = event.key[len(CURRENT_VERSION_PREFIX) :]
            self._processor.set_current_version(name, await self._store.get_current_version(name))
        elif event.db is Db.FRONTENDS and event.op != "expire":  # a heartbeat moved a TTL: nothing new
            await self._reload_frontends()
        elif event.db is Db.MODELS and ":" in event.key:
            name, version = event.key.split(":", 1)
            model = await self._store.get_model(name, version)
            if model is None:
                self._processor.remove_model(name, version)
            else:
                self._processor.set_model(name, version, model.batch_size)

    async def _reload_app(self, name: str) -> None:
        app = await self._store.get_app(name)
        if app is None:
            self._processor.remove_app(name)
            return
        links = await self._store.get_links(name)
        selection = None
        if app.policy != DEFAULT_POLICY and links:
            policy = make_policy(app.policy, app.policy_params)
            models = tuple(links)
            state = await self._store.get_selection_state(name, GLOBAL_UID)
            selection = Selection(policy, models, app.policy_params, state or policy.initial_state(models))
            if self._seed is not None:
                selection.rng.seed(f"{self._seed}:{name}")
        self._processor.set_app(
            AppRoute(
                name=name,
                input_type=InputType.parse(app.input_type),
                default_output=embed_json(app.default_output.encode()),
                slo_ns=app.latency_slo_micros * 1000,
                model=links[0] if links and selection is None else None,
                default_on_overload=app.on_overload == "default",
                selection=selection,
                input_shape=tuple(app.input_shape) if app.input_shape is not None else None,
            )
        )


async def _cancel(task: asyncio.Task[ConfigEvent]) -> None:
    """Cancel a pending read and let the subscription close behind it."""
    task.cancel()
    await asyncio.wait({task})
