"""The container side of RPC v3: a DEALER loop (ZMTP in-process, no libzmq) serving a predict function.

Behaves like Clipper 0.4's Python container (reference §4.5) with two fixes: the frontend host name is
resolved again on every reconnect (§9 #18), and a failing batch is answered with a ContainerError while the
container keeps serving (§9 #5). Predict runs on the loop thread; frames pass only through `rpc.codec`.
It reads the frontend's greeting before finishing its own, so it speaks PLAIN (presenting CLIPPER_RPC_TOKEN)
to a frontend that asks for it and NULL to one that does not (Clipper's, or ours without a token).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time

import numpy as np

from clipper.errors import ClipperError
from clipper.rpc import codec, zmtp
from clipper.runtime.closure import PredictFunction
from clipper.runtime.inputs import MalformedInput, decode_inputs
from clipper.runtime.outputs import encode_output
from clipper.settings import ContainerSettings
from clipper.types import InputType, parse_input_shape

logger = logging.getLogger(__name__)

_MAX_REMEMBERED_ERRORS = 256
_CONNECT_TIMEOUT_S = 1.0
_HANDSHAKE_TIMEOUT_S = 5.0
_SEND_TIMEOUT_S = 30.0
_REFUSED_RETRY_S = 5.0  # a frontend that refused our token is asked again this rarely
_RECV_BYTES = 256 * 1024
_SIGNATURE = zmtp.greeting(as_server=False)[: zmtp.SIGNATURE_SIZE]
_USERNAME = b"clipper"


class _Link:
    """One ZMTP (DEALER) connection to one query frontend, over a plain blocking TCP socket."""

    def __init__(self, address: str, seed: bool, token: bytes | None) -> None:
        self.address = address
        self.seed = seed
        self._token = token
        self._retry_ns = 0  # no connection attempt before this (monotonic ns)
        self.sock: socket.socket | None = None
        self.parser = zmtp.Parser()
        # One receive buffer per link: recv(n) would allocate (and, past glibc's mmap threshold, map and
        # unmap) n bytes per call, which cost ~8% of the container's CPU at batch size 1.
        self.rbuf = memoryview(bytearray(_RECV_BYTES))
        self.last_heard_ns = self.last_sent_ns = time.monotonic_ns()
        self.heard = False
        self.frontends: list[str] = []  # the live frontends, as this one last told us

    def connect(self) -> bool:
        """Connect, handshake (NULL or PLAIN, as the frontend asks) and send a heartbeat; False if not now."""
        if time.monotonic_ns() < self._retry_ns:
            return False
        host, port = self.address.removeprefix("tcp://").rsplit(":", 1)
        try:
            sock = socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S)
        except OSError:
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.parser = zmtp.Parser()
        # libzmq stalls on a message that arrives in the same segment as the handshake: wait for its READY.
        if not self._handshake():
            self.close()
            return False
        sock.settimeout(_SEND_TIMEOUT_S)
        return self.send(codec.encode_heartbeat())

    def _handshake(self) -> bool:
        """Send our signature, learn the frontend's mechanism from its greeting, then finish in it."""
        deadline = time.monotonic() + _HANDSHAKE_TIMEOUT_S
        # libzmq sends the rest of its greeting only after it has seen our signature and major version.
        if not self.send_raw(_SIGNATURE) or self._await(b"", deadline) is None:
            return False
        mechanism = self.parser.mechanism
        if mechanism == zmtp.NULL:
            rest = zmtp.greeting(as_server=False)[zmtp.SIGNATURE_SIZE :] + zmtp.ready(b"DEALER")
            return self.send_raw(rest) and self._await(b"READY", deadline) is not None
        if self._token is None:
            self._refused("it requires a token and CLIPPER_RPC_TOKEN is not set")
            return False
        rest = zmtp.greeting(as_server=False, mechanism=zmtp.PLAIN)[zmtp.SIGNATURE_SIZE :]
        if not self.send_raw(rest + zmtp.hello(_USERNAME, self._token)):
            return False
        if self._await(b"WELCOME", deadline) is None or not self.send_raw(zmtp.initiate(b"DEALER")):
            return False
        return self._await(b"READY", deadline) is not None

    def _await(self, name: bytes, deadline: float) -> zmtp.Command | None:
        """Read until the frontend's command `name` (b"": its greeting) arrives; None if it does not."""
        assert self.sock is not None
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except OSError:
                return None
            if not data:
                if self.parser.mechanism == zmtp.PLAIN:
                    self._refused("it closed the connection during the PLAIN handshake")
                return None
            for item in self.parser.feed(data):
                if isinstance(item, zmtp.Command) and item.name == b"ERROR":
                    self._refused(f"it answered {item.body[1:].decode(errors='replace')!r}")
                    return None
                if isinstance(item, zmtp.Command) and item.name == name:
                    return item
            if not name and self.parser.mechanism is not None:
                return zmtp.Command(b"", b"")
        return None

    def _refused(self, why: str) -> None:
        """The frontend will not take us as we are: say so, and ask again only every few seconds."""
        plain = self.parser.mechanism == zmtp.PLAIN
        hint = "CLIPPER_RPC_TOKEN is missing or wrong" if plain else "see its log"
        logger.error(
            "frontend %s refused the connection: %s. %s; retrying in %.0f s",
            self.address, why, hint, _REFUSED_RETRY_S,
        )  # fmt: skip
        self._retry_ns = time.monotonic_ns() + int(_REFUSED_RETRY_S * 1e9)

    def send(self, frames: list[bytes]) -> bool:
        return self.send_raw(zmtp.encode(frames))

    def send_raw(self, data: bytes) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            self.close()
            return False
        self.last_sent_ns = time.monotonic_ns()
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class BatchFailed(Exception):
    """A batch the model could not answer; the message is the reason sent to the frontend."""


class ModelContainer:
    """Serve `predict` to the frontend named in `settings` until `stop()` is called (from any thread)."""

    def __init__(
        self,
        settings: ContainerSettings,
        predict: PredictFunction,
        *,
        input_type: InputType | None = None,
    ) -> None:
        self._settings = settings
        self._predict = predict
        self._input_type = input_type if input_type is not None else InputType.parse_env(settings.input_type)
        self._input_shape = parse_input_shape(settings.input_shape)  # InvalidInput says how to spell it
        token = settings.rpc_token.get_secret_value().encode() if settings.rpc_token is not None else None
        if token is not None and len(token) > 255:
            raise ClipperError("CLIPPER_RPC_TOKEN is longer than 255 bytes, the most ZMTP PLAIN carries")
        self._token = token
        self._stopping = threading.Event()
        self._lock = threading.RLock()
        self._wake: socket.socket | None = None
        self._logged_errors: set[str] = set()
        self._known: set[str] = set()  # the frontends last learned from any list

    def stop(self) -> None:
        """Ask the loop to return after the message in hand; safe from other threads and signal handlers."""
        self._stopping.set()
        with self._lock:
            if self._wake is not None:
                self._wake.send(b"\0")

    def run(self) -> None:
        """Serve until stopped, keeping one link to the seed frontend or to every live frontend."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        with self._lock:
            self._wake = wake_w
        links: dict[str, _Link] = {}
        try:
            while not self._stopping.is_set():
                self._sync_links(links)
                if not any(link.sock for link in links.values()):
                    self._wait(wake_r, self._settings.heartbeat_interval_ms)
                    continue
                self._serve_round(links, wake_r)
        finally:
            for link in links.values():
                link.close()
            with self._lock:
                self._wake = None
            wake_w.close()
            wake_r.close()

    def _resolve(self) -> str | None:
        """The seed frontend's address, resolved afresh so a restarted frontend with a new IP is found."""
        try:
            ip = socket.gethostbyname(self._settings.ip)
        except OSError as e:
            logger.warning("cannot resolve frontend host %s (%s); retrying", self._settings.ip, e)
            return None
        return f"tcp://{ip}:{self._settings.port}"

    def _wait(self, wake_r: socket.socket, timeout_ms: int) -> None:
        select.select([wake_r], [], [], timeout_ms / 1000)

    def _sync_links(self, links: dict[str, _Link]) -> None:
        """Open a link to each wanted frontend and close the others.

        Wanted: every frontend named in the latest list of any linked frontend (a union, so one frontend
        that has not yet seen a newcomer cannot make us leave it), else those last learned while a link to
        one of them is open, else the seed.
        """
        wanted = {a for link in links.values() for a in link.frontends}
        if wanted:
            self._known = wanted
        elif any(links[a].sock is not None for a in self._known if a in links):
            # Links to the frontends just learned have not heard their lists yet: keep them. Going back
            # to the seed now (a Kubernetes Service, say, which is in no list) would close them and loop.
            wanted = self._known
        learned = bool(wanted)
        if not wanted:
            self._known = set()
            seed = next((a for a, link in links.items() if link.seed), None) or self._resolve()
            if seed is None:
                return
            wanted = {seed}
        for address in [a for a in links if a not in wanted]:
            logger.info("leaving frontend %s", address)
            links.pop(address).close()
        for address in wanted:
            link = links.get(address)
            if link is None:
                link = links[address] = _Link(address, seed=not learned, token=self._token)
            if link.sock is None and link.connect():
                logger.debug("connected to %s", address)

    def _serve_round(self, links: dict[str, _Link], wake_r: socket.socket) -> None:
        """One wait over every link: answer what arrived, heartbeat who is due, drop who went silent."""
        interval_ns = self._settings.heartbeat_interval_ms * 1_000_000
        timeout_ns = self._settings.frontend_timeout_ms * 1_000_000
        now_ns = time.monotonic_ns()
        wait_ns = interval_ns
        for address, link in list(links.items()):
            if now_ns - link.last_heard_ns >= timeout_ns:
                logger.warning("no message from %s for %d ms; reconnecting", address, timeout_ns // 1_000_000)
                link.close()
                del links[address]
                continue
            if link.sock is None:
                continue
            if link.heard and now_ns - link.last_sent_ns >= interval_ns:
                link.send(codec.encode_heartbeat())
            due = interval_ns - (now_ns - link.last_sent_ns) if link.heard else interval_ns
            wait_ns = min(wait_ns, due, timeout_ns - (now_ns - link.last_heard_ns))
        connected = {link.sock: link for link in links.values() if link.sock is not None}
        if not connected:
            return
        watched = [*connected, wake_r]
        # Busy-poll briefly before sleeping: the next batch usually follows within microseconds under
        # load, and a wake-up from sleep costs tens of microseconds on small VMs.
        spin_until = time.monotonic_ns() + self._settings.busy_poll_us * 1000
        readable, _, _ = select.select(watched, [], [], 0)
        while not readable and time.monotonic_ns() < spin_until:
            readable, _, _ = select.select(watched, [], [], 0)
        if not readable:
            readable, _, _ = select.select(watched, [], [], max(0.001, wait_ns / 1e9))
        for sock in readable:
            if sock in connected:
                self._drain(connected[sock])

    def _drain(self, link: _Link) -> None:
        assert link.sock is not None
        try:
            n = link.sock.recv_into(link.rbuf)
        except OSError:
            n = 0
        if not n:
            logger.info("frontend %s closed the connection", link.address)
            link.close()
            return
        link.heard = True
        link.last_heard_ns = time.monotonic_ns()
        try:
            for item in link.parser.feed(link.rbuf[:n]):
                if self._stopping.is_set():
                    return
                if isinstance(item, zmtp.Command):
                    if item.name == b"PING":
                        link.send_raw(zmtp.pong(item))
                    elif item.name == b"ERROR":
                        logger.warning("frontend %s refused us: %r", link.address, item.body[1:])
                        link.close()
                    continue
                reply = self._handle(item, link)
                if reply is not None:
                    link.send(reply)
        except zmtp.ZmtpError as e:
            logger.warning("closing link to %s: %s", link.address, e)
            link.close()

    def _handle(self, frames: list[bytes], link: _Link) -> list[bytes] | None:
        """Answer one frontend message; None when it needs no answer."""
        try:
            message = codec.decode_frontend_message(frames)
        except codec.ProtocolError as e:
            logger.warning("ignoring a malformed message from the frontend: %s", e)
            return None
        if isinstance(message, codec.FrontendList):
            link.frontends = [f"tcp://{a}" for a in message.addresses]
            return None
        if isinstance(message, codec.HeartbeatReply):
            if not message.request_metadata:
                return None
            logger.info(
                "registering %s:%s (%s)",
                self._settings.model_name,
                self._settings.model_version,
                self._input_type.wire_name,
            )
            return codec.encode_new_container(
                self._settings.model_name,
                self._settings.model_version,
                self._input_type,
                follows_frontends=True,
            )
        try:
            return codec.encode_response(message.msg_id, self._run_batch(message))
        except BatchFailed as e:
            return codec.encode_container_error(message.msg_id, str(e))

    def _run_batch(self, request: codec.PredictRequest) -> list[bytes]:
        """Decode inputs, call the model, encode each output (`runtime.outputs`); BatchFailed says why not."""
        n = len(request.inputs)
        try:
            inputs = decode_inputs(request.input_type, request.inputs, self._input_shape)
        except MalformedInput as e:
            raise BatchFailed(f"malformed input: {e}") from e
        try:
            outputs = self._predict(inputs)
            if not isinstance(outputs, list | tuple | np.ndarray):
                raise BatchFailed(f"model returned {type(outputs).__name__}, expected a list of {n} outputs")
            if len(outputs) != n:
                raise BatchFailed(f"model returned {len(outputs)} outputs for {n} inputs")
            return [encode_output(output) for output in outputs]
        except BatchFailed as e:
            self._log_once(str(e), None)
            raise
        except Exception as e:
            reason = f"model raised {type(e).__name__}: {e}"
            self._log_once(reason, e)
            raise BatchFailed(reason) from e

    def _log_once(self, reason: str, error: BaseException | None) -> None:
        """Log a failure with its traceback the first time it occurs; repeats go to DEBUG to spare the log."""
        if reason in self._logged_errors:
            logger.debug("batch failed again: %s", reason)
            return
        if len(self._logged_errors) < _MAX_REMEMBERED_ERRORS:
            self._logged_errors.add(reason)
        logger.error("batch failed: %s", reason, exc_info=error)
