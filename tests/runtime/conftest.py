"""A real ZeroMQ ROUTER playing the query frontend, and a fixture running a ModelContainer in a thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from clipper.rpc import codec
from clipper.runtime.server import ModelContainer
from clipper.settings import ContainerSettings
from clipper.types import InputType

WAIT_S = 10.0


class RouterFrontend:
    """The frontend side of RPC v3 on 127.0.0.1, driven step by step by a test through `rpc.codec`."""

    def __init__(self, context: zmq.Context[Any]) -> None:
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")

    def recv_raw(self, timeout_s: float = WAIT_S) -> list[bytes]:
        """The next message with its routing-id frame; fails the test after `timeout_s`."""
        if not self.socket.poll(int(timeout_s * 1000)):
            raise AssertionError(f"no message from the container within {timeout_s} s")
        return self.socket.recv_multipart()

    def recv(self, timeout_s: float = WAIT_S) -> tuple[bytes, codec.ContainerMessage]:
        frames = self.recv_raw(timeout_s)
        return frames[0], codec.decode_container_message(frames[1:])

    def send(self, routing_id: bytes, frames: list[bytes]) -> None:
        self.socket.send_multipart([routing_id, *frames])

    def expect(self, kind: type, timeout_s: float = WAIT_S) -> tuple[bytes, Any]:
        """Answer heartbeats with KeepAlive until a message of `kind` arrives."""
        deadline = time.monotonic() + timeout_s
        while True:
            routing_id, message = self.recv(max(0.0, deadline - time.monotonic()))
            if isinstance(message, kind):
                return routing_id, message
            if isinstance(message, codec.Heartbeat):
                self.send(routing_id, codec.encode_heartbeat_reply(False))

    def register(self) -> tuple[bytes, codec.NewContainer]:
        """Complete the handshake: first heartbeat -> RequestContainerMetadata -> NewContainer."""
        routing_id, _ = self.recv()
        self.send(routing_id, codec.encode_heartbeat_reply(True))
        new_id, announced = self.expect(codec.NewContainer)
        assert new_id == routing_id
        return routing_id, announced

    def predict(
        self, routing_id: bytes, msg_id: int, input_type: InputType, inputs: list[bytes]
    ) -> codec.PredictResponse | codec.ContainerError:
        """Send one batch and return the container's answer to it."""
        self.send(routing_id, codec.encode_predict_request(msg_id, input_type, inputs))
        _, reply = self.expect(codec.PredictResponse | codec.ContainerError)
        assert reply.msg_id == msg_id
        return reply  # type: ignore[no-any-return]

    def close(self) -> None:
        self.socket.close(linger=0)


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.term()


@pytest.fixture
def frontend(zmq_context: zmq.Context[Any]) -> Iterator[RouterFrontend]:
    router = RouterFrontend(zmq_context)
    yield router
    router.close()


@pytest.fixture
def make_settings(frontend: RouterFrontend) -> Callable[..., ContainerSettings]:
    """ContainerSettings pointing at `frontend`, with fast heartbeats; keywords override fields."""

    def make(**overrides: Any) -> ContainerSettings:
        values: dict[str, Any] = {
            "model_name": "m",
            "model_version": "1",
            "ip": "127.0.0.1",
            "port": frontend.port,
            "input_type": "doubles",
            "heartbeat_interval_ms": 50,
            "frontend_timeout_ms": 10_000,
        }
        return ContainerSettings(**{**values, **overrides})

    return make


StartContainer = Callable[..., ModelContainer]


@contextlib.contextmanager
def threaded_containers() -> Iterator[StartContainer]:
    """`start(settings, predict)` runs a ModelContainer in a thread; each is stopped and joined at the end."""
    running: list[tuple[ModelContainer, threading.Thread]] = []

    def start(settings: ContainerSettings, predict: Callable[[Any], Any]) -> ModelContainer:
        container = ModelContainer(settings, predict)
        thread = threading.Thread(target=container.run, name=f"container-{settings.model_name}", daemon=True)
        thread.start()
        running.append((container, thread))
        return container

    yield start
    for container, thread in running:
        container.stop()
        thread.join(WAIT_S)
        assert not thread.is_alive(), "ModelContainer.run() did not return after stop()"


@pytest.fixture
def start_container(zmq_context: zmq.Context[Any]) -> Iterator[StartContainer]:
    """Start ModelContainers in threads; each is stopped and joined at teardown."""
    with threaded_containers() as start:
        yield start
