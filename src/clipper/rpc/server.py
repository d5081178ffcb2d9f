"""Frontend side of RPC v3: a ZMTP (ZeroMQ wire) server, the registry of containers, heartbeats, liveness.

Each container connection is an asyncio protocol on the event loop, so receiving, sending and dispatch all
happen on one thread with no lock, no I/O thread and no copy beyond the socket's. A container that goes
away closes its TCP connection, and `connection_lost` removes it at once: its queries are retried or
answered in milliseconds instead of Clipper's 30-40 s.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from clipper.rpc import codec, zmtp
from clipper.types import InputType

logger = logging.getLogger(__name__)

Clock = Callable[[], int]
_GREETING = zmtp.greeting(as_server=True)
_READY = zmtp.ready(b"ROUTER")


class ReplicaGone(Exception):
    """The container's connection is closed."""


class Peer(asyncio.Protocol):
    """One container's TCP connection, speaking ZMTP as a ROUTER would."""

    def __init__(self, server: RpcServer) -> None:
        self._server = server
        self._parser = zmtp.Parser()
        self.transport: asyncio.Transport | None = None
        self.name = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peername = transport.get_extra_info("peername")
        self.name = f"{peername[0]}:{peername[1]}" if peername else "?"
        transport.write(_GREETING)  # type: ignore[attr-defined]
        self._server.connected(self)

    def data_received(self, data: bytes) -> None:
        try:
            for item in self._parser.feed(data):
                if isinstance(item, zmtp.Command):
                    self._command(item)
                else:
                    self._server.received(self, item)
        except (zmtp.ZmtpError, codec.ProtocolError) as e:
            logger.warning("Closing RPC connection from %s: %s", self.name, e)
            self.close()

    def _command(self, cmd: zmtp.Command) -> None:
        assert self.transport is not None
        if cmd.name == b"READY":
            self.transport.write(_READY)
        elif cmd.name == b"PING":
            self.transport.write(zmtp.pong(cmd))
        elif cmd.name == b"ERROR":
            logger.warning("RPC peer %s reported an error: %r", self.name, cmd.body[1:])

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._server.lost(self)

    def send(self, frames: list[bytes]) -> None:
        """Queue one message; raise ReplicaGone if the connection is closed."""
        if self.transport is None or self.transport.is_closing():
            raise ReplicaGone(self.name)
        self.transport.write(zmtp.encode(frames))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True, eq=False)
class Replica:
    """One connected model container, as this frontend sees it."""

    peer: Peer
    connection_id: int
    model_name: str
    model_version: str
    input_type: InputType
    replica_id: int = -1
    last_seen_ns: int = 0
    in_flight: int = 0
    follows_frontends: bool = False

    @property
    def model_key(self) -> tuple[str, str]:
        return (self.model_name, self.model_version)


class RpcListener:
    """What the RPC server tells the query core. Registration may await (it writes to the config store)."""

    async def replica_added(self, replica: Replica) -> None:
        """A container announced itself; it may be given work once this returns."""

    def replica_removed(self, replica: Replica) -> None:
        """A container is gone; its in-flight work must be retried or failed now."""

    def response(self, replica: Replica, msg: codec.PredictResponse | codec.ContainerError) -> None:
        """A batch came back (outputs or an error)."""


class RpcServer:
    """Listens on the RPC port, registers containers, answers heartbeats and sends batches."""

    def __init__(
        self,
        host: str,
        port: int,
        listener: RpcListener,
        *,
        heartbeat_interval_ms: int = 1000,
        container_timeout_ms: int = 30_000,
        clock: Clock = time.monotonic_ns,
    ) -> None:
        self.host = host
        self.port = port
        self._listener = listener
        self._heartbeat_interval_s = heartbeat_interval_ms / 1000
        self._timeout_ns = container_timeout_ms * 1_000_000
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._replicas: dict[Peer, Replica] = {}
        self._peers: set[Peer] = set()
        self._registering: set[Peer] = set()
        self._connection_ids = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._frontends: list[str] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Peer(self), self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self._spawn(self._heartbeat_loop())
        logger.info("RPC server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            for peer in list(self._peers):
                peer.close()
            await self._server.wait_closed()
            self._server = None

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("RPC background task failed", exc_info=task.exception())

    # --- sending ----------------------------------------------------------------------------

    def send_predict(self, replica: Replica, msg_id: int, inputs: list[bytes]) -> None:
        """Send one batch; raise ReplicaGone if the container disconnected."""
        replica.peer.send(codec.encode_predict_request(msg_id, replica.input_type, inputs))
        replica.in_flight += 1

    # --- receiving --------------------------------------------------------------------------

    def connected(self, peer: Peer) -> None:
        self._peers.add(peer)

    def received(self, peer: Peer, frames: list[bytes]) -> None:
        """One message from a container."""
        msg = codec.decode_container_message(frames)
        replica = self._replicas.get(peer)
        if replica is not None:
            replica.last_seen_ns = self._clock()
        if isinstance(msg, codec.PredictResponse | codec.ContainerError):
            if replica is None:
                return  # a late answer from a container we already dropped
            replica.in_flight = max(0, replica.in_flight - 1)
            self._listener.response(replica, msg)
        elif isinstance(msg, codec.Heartbeat):
            registered = replica is not None or peer in self._registering
            self._reply_heartbeat(peer, request_metadata=not registered)
        elif isinstance(msg, codec.NewContainer):
            if replica is not None or peer in self._registering:
                return
            if msg.rpc_version != codec.RPC_VERSION:
                logger.warning(
                    "Ignored container %s:%s speaking RPC version %d (need %d)",
                    msg.model_name, msg.model_version, msg.rpc_version, codec.RPC_VERSION,
                )  # fmt: skip
                return
            self._registering.add(peer)
            self._spawn(self._register(peer, msg))

    def lost(self, peer: Peer) -> None:
        """A connection closed: the container behind it is gone."""
        self._peers.discard(peer)
        replica = self._replicas.get(peer)
        if replica is not None:
            self._remove(replica, "disconnected")

    def _reply_heartbeat(self, peer: Peer, request_metadata: bool) -> None:
        try:
            peer.send(codec.encode_heartbeat_reply(request_metadata))
        except ReplicaGone:
            pass  # the container left between its heartbeat and our answer

    async def _register(self, peer: Peer, msg: codec.NewContainer) -> None:
        replica = Replica(
            peer=peer,
            connection_id=next(self._connection_ids),
            model_name=msg.model_name,
            model_version=msg.model_version,
            input_type=msg.input_type,
            last_seen_ns=self._clock(),
            follows_frontends=msg.follows_frontends,
        )
        try:
            await self._listener.replica_added(replica)
        finally:
            self._registering.discard(peer)
        if peer.transport is None:  # it left while we registered it
            self._listener.replica_removed(replica)
            return
        self._replicas[peer] = replica
        logger.info(
            "Container %s:%s registered as replica %d",
            replica.model_name,
            replica.model_version,
            replica.replica_id,
        )
        if replica.follows_frontends and self._frontends:
            self._send_frontend_list(replica)

    def _remove(self, replica: Replica, reason: str) -> None:
        if self._replicas.pop(replica.peer, None) is None:
            return
        logger.info(
            "Container %s:%s replica %d removed (%s)",
            replica.model_name, replica.model_version, replica.replica_id, reason,
        )  # fmt: skip
        replica.peer.close()
        self._listener.replica_removed(replica)

    # --- scale-out ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """`host:port` where containers reach this frontend."""
        return f"{self.host}:{self.port}"

    def set_frontends(self, addresses: list[str], leaving: bool = False) -> None:
        """The live frontends changed: tell every container that follows the list.

        This frontend is always in its own list (its registration may not have reached the store yet)
        until it is leaving; then it is left out, so containers drop it once they have answered it.
        """
        others = sorted(set(addresses) - {self.address})
        addresses = others if leaving else sorted([*others, self.address])
        if addresses == self._frontends:
            return
        self._frontends = addresses
        for replica in list(self._replicas.values()):
            if replica.follows_frontends:
                self._send_frontend_list(replica)

    def _send_frontend_list(self, replica: Replica) -> None:
        try:
            replica.peer.send(codec.encode_frontend_list(self._frontends))
        except ReplicaGone:
            pass  # its removal is already under way

    # --- liveness ---------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Drop containers silent for too long. One busy with a batch is not silent: Clipper's bug #4."""
        while True:
            await asyncio.sleep(self._heartbeat_interval_s)
            now = self._clock()
            for replica in list(self._replicas.values()):
                if replica.in_flight == 0 and now - replica.last_seen_ns > self._timeout_ns:
                    self._remove(replica, "no heartbeat")
