"""Frontend side of RPC v3: a ZMTP (ZeroMQ wire) server, the registry of containers, heartbeats, liveness.

Each container connection is an asyncio protocol on the event loop, so receiving, sending and dispatch all
happen on one thread with no lock, no I/O thread and no copy beyond the socket's. A container that goes
away closes its TCP connection, and `connection_lost` removes it at once: its queries are retried or
answered in milliseconds instead of Clipper's 30-40 s.

The port is open to anything that can reach it, so it is bounded: frame, message and command sizes (small
until a container has registered), a deadline for the handshake and registration, a cap on connections, a
bound on how long a replica may hold a batch, and, when the frontend has a token, ZMTP PLAIN with the token
as the password (without one it speaks NULL, which Clipper 0.4 containers need).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import SecretStr

from clipper.rpc import codec, zmtp
from clipper.types import InputType

logger = logging.getLogger(__name__)

Clock = Callable[[], int]
_GREETINGS = {m: zmtp.greeting(as_server=True, mechanism=m) for m in (zmtp.NULL, zmtp.PLAIN)}
_READY = zmtp.ready(b"ROUTER")
_UNREGISTERED_FRAMES = 16  # a NewContainer has 7; nothing larger is due before registration


class ReplicaGone(Exception):
    """The container's connection is closed."""


class Peer(asyncio.Protocol):
    """One container's TCP connection, speaking ZMTP as a ROUTER would (NULL, or PLAIN with a token)."""

    def __init__(self, server: RpcServer) -> None:
        self._server = server
        self._parser = zmtp.Parser(server.unregistered_limits)
        self.transport: asyncio.Transport | None = None
        self.name = "?"
        self._awaiting = b"READY" if server.mechanism == zmtp.NULL else b"HELLO"  # b"" once open
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not a subclass
        peername = transport.get_extra_info("peername")
        self.name = f"{peername[0]}:{peername[1]}" if peername else "?"
        if not self._server.connected(self):
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(_GREETINGS[self._server.mechanism])  # type: ignore[attr-defined]
        self._deadline = asyncio.get_running_loop().call_later(
            self._server.handshake_timeout_s, self._handshake_expired
        )

    def data_received(self, data: bytes) -> None:
        try:
            for item in self._parser.feed(data):
                if isinstance(item, zmtp.Command):
                    self._command(item)
                elif not self._awaiting:
                    self._server.received(self, item)
                else:
                    raise zmtp.ZmtpError("message before the ZMTP handshake completed")
        except (zmtp.ZmtpError, codec.ProtocolError) as e:
            logger.warning("Closing RPC connection from %s: %s", self.name, e)
            if self.transport is not None:
                self.transport.write(zmtp.error(str(e)))
            self.close()

    def _command(self, cmd: zmtp.Command) -> None:
        assert self.transport is not None
        if self._awaiting:
            self._handshake(cmd)
        elif cmd.name == b"PING":
            self.transport.write(zmtp.pong(cmd))
        elif cmd.name == b"ERROR":
            logger.warning("RPC peer %s reported an error: %r", self.name, cmd.body[1:])

    def _handshake(self, cmd: zmtp.Command) -> None:
        """Check the peer's mechanism, then its READY (NULL) or HELLO and INITIATE (PLAIN)."""
        assert self.transport is not None
        mechanism = self._server.mechanism
        if self._parser.mechanism != mechanism:
            hint = " (set CLIPPER_RPC_TOKEN on the container)" if mechanism == zmtp.PLAIN else ""
            raise zmtp.ZmtpError(
                f"peer uses the {self._parser.mechanism!r} mechanism, this frontend {mechanism!r}{hint}"
            )
        if cmd.name == b"ERROR":
            raise zmtp.ZmtpError(f"peer refused the handshake: {cmd.body[1:]!r}")
        if cmd.name != self._awaiting:
            raise zmtp.ZmtpError(f"expected {self._awaiting.decode()}, got {cmd.name!r}")
        if cmd.name == b"HELLO":
            _, password = zmtp.hello_credentials(cmd.body)
            if not self._server.token_matches(password):
                raise zmtp.ZmtpError("wrong RPC token (PLAIN password); check CLIPPER_RPC_TOKEN")
            self.transport.write(zmtp.WELCOME)
            self._awaiting = b"INITIATE"
            return
        zmtp.ready_properties(cmd.body)  # READY or INITIATE: its metadata must at least parse
        self.transport.write(_READY)
        self._awaiting = b""

    def _handshake_expired(self) -> None:
        self._deadline = None
        logger.info(
            "Closing RPC connection from %s: no handshake and registration within %.1f s",
            self.name, self._server.handshake_timeout_s,
        )  # fmt: skip
        self.close()

    def registering(self) -> None:
        """It sent NewContainer: the handshake deadline is met and full-size messages may follow."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._parser.limits = self._server.limits

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
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
    busy_since_ns: int = 0  # when it was given its oldest unanswered batch, or last answered one
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
    """Listens on the RPC port, registers containers, answers heartbeats and sends batches.

    `batch_timeout_ms` bounds how long a replica may hold a batch; `min_batch_timeout_ns` (the longest app
    SLO, asked once per heartbeat interval) keeps that bound from cutting a batch short of its SLO.
    """

    def __init__(
        self,
        host: str,
        port: int,
        listener: RpcListener,
        *,
        heartbeat_interval_ms: int = 1000,
        container_timeout_ms: int = 30_000,
        rpc_token: SecretStr | None = None,
        limits: zmtp.Limits | None = None,
        handshake_timeout_ms: int = 5_000,
        max_connections: int = 1024,
        batch_timeout_ms: int = 60_000,
        min_batch_timeout_ns: Callable[[], int] = lambda: 0,
        clock: Clock = time.monotonic_ns,
    ) -> None:
        for name, value in (
            ("heartbeat_interval_ms", heartbeat_interval_ms),
            ("container_timeout_ms", container_timeout_ms),
            ("handshake_timeout_ms", handshake_timeout_ms),
            ("max_connections", max_connections),
            ("batch_timeout_ms", batch_timeout_ms),
        ):
            if value <= 0:
                raise ValueError(f"RpcServer {name} must be positive, got {value}")
        self.host = host
        self.port = port
        self._listener = listener
        self._heartbeat_interval_s = heartbeat_interval_ms / 1000
        self._timeout_ns = container_timeout_ms * 1_000_000
        self._token = rpc_token.get_secret_value().encode() if rpc_token is not None else None
        self.mechanism = zmtp.NULL if self._token is None else zmtp.PLAIN
        self.limits = limits if limits is not None else zmtp.Limits()
        self.unregistered_limits = zmtp.Limits(
            message_bytes=min(self.limits.message_bytes, self.limits.command_bytes),
            message_frames=min(self.limits.message_frames, _UNREGISTERED_FRAMES),
            command_bytes=self.limits.command_bytes,
        )
        self.handshake_timeout_s = handshake_timeout_ms / 1000
        self._max_connections = max_connections
        self._refused = 0  # connections refused since the count was last under the cap
        self._batch_timeout_ns = batch_timeout_ms * 1_000_000
        self._min_batch_timeout_ns = min_batch_timeout_ns
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
        if not replica.in_flight:
            replica.busy_since_ns = self._clock()
        replica.in_flight += 1

    # --- receiving --------------------------------------------------------------------------

    def connected(self, peer: Peer) -> bool:
        """Admit a new connection unless `max_connections` are open; a burst of refusals is logged once."""
        if len(self._peers) >= self._max_connections:
            if not self._refused:
                logger.warning(
                    "RPC connection limit (%d) reached: refusing new connections (first from %s)",
                    self._max_connections, peer.name,
                )  # fmt: skip
            self._refused += 1
            return False
        if self._refused:
            logger.warning("RPC connections accepted again after %d were refused", self._refused)
            self._refused = 0
        self._peers.add(peer)
        return True

    def token_matches(self, password: bytes) -> bool:
        """Whether a PLAIN password is this frontend's token, in time independent of where they differ."""
        return self._token is not None and hmac.compare_digest(password, self._token)

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
            replica.busy_since_ns = replica.last_seen_ns
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
            peer.registering()
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
        """Drop idle containers silent for too long, and busy ones holding a batch for too long.

        A busy container may be silent (its model runs; Clipper's bug #4), but not for longer than the batch
        bound, heartbeats or not: its queries then go to another replica or get the default output.
        """
        while True:
            await asyncio.sleep(self._heartbeat_interval_s)
            now = self._clock()
            batch_timeout_ns = max(self._batch_timeout_ns, self._min_batch_timeout_ns())
            for replica in list(self._replicas.values()):
                if replica.in_flight:
                    if now - replica.busy_since_ns > batch_timeout_ns:
                        self._remove(replica, f"batch unanswered for over {batch_timeout_ns // 1_000_000} ms")
                elif now - replica.last_seen_ns > self._timeout_ns:
                    self._remove(replica, "no heartbeat")
