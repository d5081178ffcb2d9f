"""Composition root of a query frontend: `python -m clipper.frontends.query`.

Start order: config store -> processor -> config follower (subscribe, then snapshot) -> RPC server ->
HTTP -> frontend registry heartbeat. Stop order drains: stop accepting, answer what is held, then leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from functools import partial

import redis.exceptions
import uvloop
from prometheus_client import CollectorRegistry

from clipper.config.store import ConfigStore
from clipper.frontends.feedback import FeedbackHandler
from clipper.frontends.follower import ConfigFollower
from clipper.frontends.http1 import FD_RESERVE_MIN, HttpServer, raise_fd_limit
from clipper.frontends.metrics import QueryMetrics
from clipper.frontends.query_http import QueryApp
from clipper.query.processor import QueryProcessor
from clipper.rpc.server import Replica, RpcServer
from clipper.rpc.zmtp import Limits
from clipper.schema import Container, Frontend
from clipper.settings import QueryFrontendSettings, reveal

logger = logging.getLogger(__name__)

AWAIT_REPLICAS_POLL_S = 0.05
REMOVE_RETRY_FIRST_S = 0.1
REMOVE_RETRY_MAX_S = 5.0
OWN_PORT_MAX_CONNECTIONS = 64  # scrapers and probes, not clients
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # bound to every address: advertise the RPC host instead


class StoreRecorder:
    """Records this frontend's replicas in the config store (DB 3) under cluster-unique replica ids.

    Removals go through one task that deletes every record gone since its last round in one command and
    retries while Redis is away, so a thousand containers leaving at once cost one DEL, not a thousand
    concurrent ones, and no record is left behind.
    """

    def __init__(self, store: ConfigStore, frontend_id: str) -> None:
        self._store = store
        self._frontend_id = frontend_id
        self._gone: set[tuple[str, str, int]] = set()
        self._remover: asyncio.Task[None] | None = None

    async def register(self, replica: Replica) -> int:
        replica_id = await self._store.next_replica_id(replica.model_name, replica.model_version)
        await self._store.add_container(self._record(replica, replica_id))
        return replica_id

    def forget(self, replica: Replica) -> None:
        if replica.replica_id < 0:  # never recorded
            return
        self._gone.add((replica.model_name, replica.model_version, replica.replica_id))
        if self._remover is None or self._remover.done():
            self._remover = asyncio.create_task(self._remove_gone())

    async def _remove_gone(self) -> None:
        delay_s = REMOVE_RETRY_FIRST_S
        while self._gone:
            batch = list(self._gone)
            try:
                await self._store.remove_containers(batch)
            except redis.exceptions.RedisError as e:
                logger.warning("Could not remove %d container records (%s); retrying", len(batch), e)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, REMOVE_RETRY_MAX_S)
                continue
            self._gone.difference_update(batch)
            delay_s = REMOVE_RETRY_FIRST_S

    def _record(self, replica: Replica, replica_id: int) -> Container:
        return Container(
            model_name=replica.model_name,
            model_version=replica.model_version,
            model_replica_id=replica_id,
            input_type=replica.input_type.wire_name,
            frontend_id=self._frontend_id,
            zmq_connection_id=replica.connection_id,
        )


async def run_query_frontend(settings: QueryFrontendSettings, stop: asyncio.Event) -> None:
    """Build and run one query frontend until `stop` is set, then drain and leave."""
    fid = settings.frontend_id
    store = ConfigStore(settings.redis_url, password=reveal(settings.redis_password))
    await store.start_retrying(retry_interval_s=0.5)
    metrics = QueryMetrics(CollectorRegistry(), fid)
    recorder = StoreRecorder(store, fid)
    processor = QueryProcessor(
        None,
        recorder,
        metrics,
        asyncio.get_running_loop(),
        cache_size_bytes=settings.cache_size_bytes,
        queue_max_entries=settings.queue_max_entries,
        max_batch_size=settings.max_batch_size_entries,
        batch_wait_ms=settings.batch_wait_ms,
    )
    rpc = RpcServer(
        settings.rpc_host,
        settings.rpc_port,
        processor,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        container_timeout_ms=settings.container_timeout_ms,
        rpc_token=settings.rpc_token,
        limits=Limits(
            message_bytes=settings.rpc_max_message_bytes,
            message_frames=settings.rpc_max_message_frames,
            command_bytes=settings.rpc_max_command_bytes,
        ),
        handshake_timeout_ms=settings.rpc_handshake_timeout_ms,
        max_connections=settings.rpc_max_connections,
        batch_timeout_ms=settings.rpc_batch_timeout_ms,
        min_batch_timeout_ns=lambda: max((app.slo_ns for app in processor.apps.values()), default=0),
    )
    processor.transport = rpc
    metrics.watch_queues(processor.queue_lengths)
    metrics.watch_selection(processor.selection_weights)
    follower = ConfigFollower(store, processor, rpc.set_frontends, settings.selection_seed)
    app = QueryApp(
        processor,
        metrics,
        fid,
        max_inputs=settings.max_inputs_per_request or settings.queue_max_entries,
        query_token=reveal(settings.query_token),
        feedback=FeedbackHandler(processor, store, metrics),
    )
    serve = partial(  # both ports serve the same app under the same request limits
        HttpServer,
        app,
        settings.http_host,
        max_body_bytes=settings.max_body_bytes,
        keepalive_timeout_s=settings.keepalive_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
    )
    http = serve(
        settings.http_port,
        max_connections=settings.max_connections,
        reserved_fds=settings.rpc_max_connections + FD_RESERVE_MIN,  # containers, Redis, logs
    )
    # The same app on a port of its own, so a scrape reaches this frontend alone.
    own = serve(settings.metrics_port, max_connections=OWN_PORT_MAX_CONNECTIONS)
    await store.remove_frontend_containers(fid)
    await follower.start()
    await rpc.start()
    await http.start(listening=False)  # the port is ours (and known); no query is routed here yet
    await own.start()
    advertised = settings.rpc_host if settings.http_host in WILDCARD_HOSTS else settings.http_host
    me = Frontend(
        frontend_id=fid,
        rpc_address=f"{settings.rpc_host}:{rpc.port}",
        http_address=f"{settings.http_host}:{http.port}",
        metrics_address=f"{advertised}:{own.port}",
    )
    registry_task = asyncio.create_task(_heartbeat_registry(store, me, settings.frontend_ttl_ms))
    await _await_replicas(store, processor, settings.ready_timeout_ms / 1000)
    await http.listen()
    app.ready = True
    logger.info("Query frontend %s serving HTTP on %s:%d", fid, settings.http_host, http.port)
    try:
        await stop.wait()
    finally:
        logger.info("Query frontend %s draining", fid)
        app.draining = True
        registry_task.cancel()
        await follower.stop()
        with contextlib.suppress(redis.exceptions.RedisError):
            await store.deregister_frontend(fid)
        rpc.set_frontends([f.rpc_address for f in await store.list_frontends()], leaving=True)
        await app.drained(settings.drain_timeout_ms / 1000)
        await http.close()
        await own.close()
        processor.shutdown()
        await rpc.stop()
        with contextlib.suppress(redis.exceptions.RedisError):
            await store.remove_frontend_containers(fid)
        await store.close()
        logger.info("Query frontend %s stopped", fid)


async def _await_replicas(store: ConfigStore, processor: QueryProcessor, timeout_s: float) -> None:
    """Before taking queries, wait until every model version that serves an app through other frontends has
    a replica here too (containers learn of this frontend from the registry and dial it).

    A frontend added to a running cluster, or restarted, would otherwise answer its first queries with
    "no connected models" while its peers serve them. After `timeout_s` it serves anyway, and says which
    versions are missing.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            elsewhere = {(c.model_name, c.model_version) for c in await store.list_containers()}
        except redis.exceptions.RedisError as e:
            logger.warning("Could not read the replica records (%s); serving without waiting", e)
            return
        missing = processor.missing_replicas(elsewhere)
        if not missing:
            return
        if loop.time() > deadline:
            names = ", ".join(f"{m}:{v}" for m, v in missing)
            logger.warning("Serving after %.0f s without a replica of %s", timeout_s, names)
            return
        await asyncio.sleep(AWAIT_REPLICAS_POLL_S)


async def _heartbeat_registry(store: ConfigStore, me: Frontend, ttl_ms: int) -> None:
    while True:
        try:
            await store.register_frontend(me, ttl_ms)
        except redis.exceptions.RedisError as e:
            logger.warning("Could not refresh frontend registration: %s", e)
        await asyncio.sleep(ttl_ms / 3000)


def main() -> None:
    settings = QueryFrontendSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_fd_limit()  # clients and containers are sockets: a 1,024 default would cap them early

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_query_frontend(settings, stop)

    # What startup allocated is never garbage; keep full collections off it. The collector keeps its
    # default thresholds: the query path frees nearly everything by reference counting, so under wrk
    # (noop model, 64 connections, ~190k requests in 6 s) it ran 25 young and 1 full collection, 0.02 s
    # in all (~0.1 us of ~16 us CPU per request), and raising the threshold to 50,000 bought nothing
    # measurable while letting cyclic garbage live ~70x longer.
    gc.freeze()
    uvloop.run(_run())


if __name__ == "__main__":
    main()
