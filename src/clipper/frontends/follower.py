"""Keeps a query frontend's in-memory view of apps, links, versions and models in step with the store.

It subscribes first, then loads a snapshot, then applies each change by re-reading the changed key, so a
change made while it loads is never lost and a repeated event is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from clipper.config.store import CURRENT_VERSION_PREFIX, ConfigEvent, ConfigStore, Db
from clipper.query.answers import embed_json
from clipper.query.processor import AppRoute, QueryProcessor
from clipper.types import InputType

logger = logging.getLogger(__name__)


class ConfigFollower:
    """Owns the task that applies config-store events to a QueryProcessor."""

    def __init__(
        self, store: ConfigStore, processor: QueryProcessor, on_frontends: Callable[[list[str]], None]
    ) -> None:
        self._store = store
        self._processor = processor
        self._on_frontends = on_frontends
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._store.enable_notifications()
        subscribed = asyncio.Event()
        self._task = asyncio.create_task(self._follow(subscribed))
        await asyncio.wait_for(subscribed.wait(), 10)
        await self.reload_all()

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Stop following; a Redis call stuck in cancellation is abandoned after `timeout_s`."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=timeout_s)

    async def _follow(self, subscribed: asyncio.Event) -> None:
        async for event in self._store.watch(subscribed):
            try:
                await self.apply(event)
            except Exception:  # a bad record must not stop the frontend from following later changes
                logger.exception("Could not apply config change %s", event)

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
        if event.db is Db.APPS:
            await self._reload_app(event.key)
        elif event.db is Db.LINKS:
            links = await self._store.get_links(event.key)
            self._processor.set_link(event.key, links[0] if links else None)
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
        self._processor.set_app(
            AppRoute(
                name=name,
                input_type=InputType.parse(app.input_type),
                default_output=embed_json(app.default_output.encode()),
                slo_ns=app.latency_slo_micros * 1000,
                model=links[0] if links else None,
                default_on_overload=app.on_overload == "default",
            )
        )
