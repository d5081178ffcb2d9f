"""The container side of RPC v3: a DEALER loop that registers with a frontend and serves a predict function.

Behaves like Clipper 0.4's Python container (reference §4.5) with two fixes: the frontend host name is
resolved again on every reconnect (§9 #18), and a failing batch is answered with a ContainerError while the
container keeps serving (§9 #5). Predict runs on the loop thread; frames pass only through `rpc.codec`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import numpy as np
import zmq

from clipper.rpc import codec
from clipper.runtime.closure import PredictFunction
from clipper.runtime.inputs import MalformedInput, decode_inputs
from clipper.settings import ContainerSettings
from clipper.types import InputType

logger = logging.getLogger(__name__)

_MAX_REMEMBERED_ERRORS = 256
_STOP_LINGER_MS = 2_000


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
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self._settings = settings
        self._predict = predict
        self._input_type = input_type if input_type is not None else InputType.parse_env(settings.input_type)
        self._context = context if context is not None else zmq.Context.instance()
        self._stopping = threading.Event()
        self._lock = threading.RLock()
        self._wake: socket.socket | None = None
        self._logged_errors: set[str] = set()

    def stop(self) -> None:
        """Ask the loop to return after the message in hand; safe from other threads and signal handlers."""
        self._stopping.set()
        with self._lock:
            if self._wake is not None:
                self._wake.send(b"\0")

    def run(self) -> None:
        """Serve until stopped; each session is one DEALER socket, replaced when the frontend goes silent."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        with self._lock:
            self._wake = wake_w
        try:
            while not self._stopping.is_set():
                address = self._resolve()
                if address is None:
                    self._wait(wake_r, self._settings.heartbeat_interval_ms)
                    continue
                self._session(address, wake_r)
        finally:
            with self._lock:
                self._wake = None
            wake_w.close()
            wake_r.close()

    def _resolve(self) -> str | None:
        """The frontend's address, resolved afresh so a restarted frontend with a new IP is found."""
        try:
            ip = socket.gethostbyname(self._settings.ip)
        except OSError as e:
            logger.warning("cannot resolve frontend host %s (%s); retrying", self._settings.ip, e)
            return None
        return f"tcp://{ip}:{self._settings.port}"

    def _wait(self, wake_r: socket.socket, timeout_ms: int) -> None:
        poller = zmq.Poller()
        poller.register(wake_r, zmq.POLLIN)
        poller.poll(timeout_ms)

    def _session(self, address: str, wake_r: socket.socket) -> None:
        """One connection: heartbeat and answer; return on stop or after `frontend_timeout_ms` of silence."""
        interval_ns = self._settings.heartbeat_interval_ms * 1_000_000
        timeout_ns = self._settings.frontend_timeout_ms * 1_000_000
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake_r, zmq.POLLIN)
        try:
            sock.connect(address)
            logger.debug("connecting to %s", address)
            sock.send_multipart(codec.encode_heartbeat())
            started_ns = last_heard_ns = last_sent_ns = time.monotonic_ns()
            heard = False
            while not self._stopping.is_set():
                now_ns = time.monotonic_ns()
                if now_ns - (last_heard_ns if heard else started_ns) >= timeout_ns:
                    logger.warning(
                        "no message from %s for %d ms; reconnecting", address, timeout_ns // 1_000_000
                    )
                    return
                if heard and now_ns - last_sent_ns >= interval_ns:
                    sock.send_multipart(codec.encode_heartbeat())
                    last_sent_ns = now_ns
                wait_ns = min(interval_ns - (now_ns - last_sent_ns) if heard else interval_ns, timeout_ns)
                if not poller.poll(max(1, wait_ns // 1_000_000)):
                    continue
                while not self._stopping.is_set():
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    heard = True
                    last_heard_ns = time.monotonic_ns()
                    reply = self._handle(frames)
                    if reply is not None:
                        sock.send_multipart(reply)
                        last_sent_ns = last_heard_ns
        finally:
            # On stop, give the last reply time to leave; a silent frontend gets nothing more.
            sock.close(linger=_STOP_LINGER_MS if self._stopping.is_set() else 0)

    def _handle(self, frames: list[bytes]) -> list[bytes] | None:
        """Answer one frontend message; None when it needs no answer."""
        try:
            message = codec.decode_frontend_message(frames)
        except codec.ProtocolError as e:
            logger.warning("ignoring a malformed message from the frontend: %s", e)
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
                self._settings.model_name, self._settings.model_version, self._input_type
            )
        try:
            return codec.encode_response(message.msg_id, self._run_batch(message))
        except BatchFailed as e:
            return codec.encode_container_error(message.msg_id, str(e))

    def _run_batch(self, request: codec.PredictRequest) -> list[bytes]:
        """Decode inputs, call the model, encode each output with `str()`; raise BatchFailed with a reason."""
        n = len(request.inputs)
        try:
            inputs = decode_inputs(request.input_type, request.inputs)
        except MalformedInput as e:
            raise BatchFailed(f"malformed input: {e}") from e
        try:
            outputs = self._predict(inputs)
            if not isinstance(outputs, list | tuple | np.ndarray):
                raise BatchFailed(f"model returned {type(outputs).__name__}, expected a list of {n} outputs")
            if len(outputs) != n:
                raise BatchFailed(f"model returned {len(outputs)} outputs for {n} inputs")
            return [str(output).encode() for output in outputs]
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
