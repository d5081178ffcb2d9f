"""An in-process RpcServer with a recording listener, raw ZMTP clients, and our runtime in a thread."""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from clipper.rpc import codec, zmtp
from clipper.rpc.server import Replica, RpcListener, RpcServer
from clipper.runtime.server import ModelContainer
from clipper.settings import ContainerSettings
from clipper.types import InputType
from tests.runtime.conftest import threaded_containers

WAIT_S = 5.0


class RecordingListener(RpcListener):
    """A query core that only records what the RPC server tells it, and hands out replica ids."""

    def __init__(self) -> None:
        self.added: list[Replica] = []
        self.removed: list[Replica] = []
        self.responses: asyncio.Queue[tuple[Replica, codec.PredictResponse | codec.ContainerError]] = (
            asyncio.Queue()
        )
        self._ids = itertools.count()

    async def replica_added(self, replica: Replica) -> None:
        replica.replica_id = next(self._ids)
        self.added.append(replica)

    def replica_removed(self, replica: Replica) -> None:
        self.removed.append(replica)

    def response(self, replica: Replica, msg: codec.PredictResponse | codec.ContainerError) -> None:
        self.responses.put_nowait((replica, msg))


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `condition` on the loop until it holds; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class RawClient:
    """A hand-driven ZMTP client on asyncio streams, to do what a container should and what it must not."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = zmtp.Parser()
        self.pending: list[zmtp.Command | list[bytes]] = []

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def next(self, timeout_s: float = WAIT_S) -> zmtp.Command | list[bytes] | None:
        """The server's next command or message; None once it has closed the connection."""
        async with asyncio.timeout(timeout_s):
            while not self.pending:
                data = await self.reader.read(65536)
                if not data:
                    return None
                self.pending += self.parser.feed(data)
        return self.pending.pop(0)

    async def until_closed(self, timeout_s: float = WAIT_S) -> list[zmtp.Command | list[bytes]]:
        """Everything the server sends until it closes the connection (fails after `timeout_s`)."""
        seen = []
        async with asyncio.timeout(timeout_s):
            while (item := await self.next(timeout_s)) is not None:
                seen.append(item)
        return seen

    async def handshake(self) -> None:
        """Greeting and READY with the NULL mechanism, as a Clipper 0.4 container's libzmq does."""
        self.send(zmtp.greeting(as_server=False) + zmtp.ready(b"DEALER"))
        item = await self.next()
        assert isinstance(item, zmtp.Command) and item.name == b"READY", item

    async def register(self, model: str = "raw") -> None:
        """Heartbeat, get asked for metadata, announce `model`:1."""
        self.send(zmtp.encode(codec.encode_heartbeat()))
        reply = await self.next()
        assert reply == codec.encode_heartbeat_reply(True), reply
        self.send(zmtp.encode(codec.encode_new_container(model, "1", InputType.DOUBLES)))

    def close(self) -> None:
        self.writer.close()


MakeServer = Callable[..., Awaitable[tuple[RpcServer, RecordingListener]]]


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    """Start RpcServers on ephemeral ports (keywords go to RpcServer); all are stopped at teardown."""
    servers: list[RpcServer] = []

    async def make(**kwargs: Any) -> tuple[RpcServer, RecordingListener]:
        listener = RecordingListener()
        server = RpcServer("127.0.0.1", 0, listener, **kwargs)
        await server.start()
        servers.append(server)
        return server, listener

    yield make
    for server in servers:
        await server.stop()


StartContainer = Callable[..., ModelContainer]


def add_one(inputs: Any) -> list[str]:
    return [str(row[0] + 1) for row in inputs]


@pytest.fixture
def start_container() -> Iterator[StartContainer]:
    """Run our runtime (ModelContainer) in threads against a port; stopped and joined at teardown."""
    with threaded_containers() as run:

        def start(port: int, model: str = "good", **settings: Any) -> ModelContainer:
            values = {"model_name": model, "model_version": "1", "port": port, "heartbeat_interval_ms": 50}
            return run(ContainerSettings(**{**values, **settings}), add_one)

        yield start


async def predict_once(server: RpcServer, listener: RecordingListener, replica: Replica, msg_id: int) -> None:
    """Send a one-input batch to `replica` and check its add-one answer."""
    server.send_predict(replica, msg_id, [struct.pack("<d", float(msg_id))])
    async with asyncio.timeout(WAIT_S):
        answered, msg = await listener.responses.get()
        while answered is not replica:  # a stray answer from some other (rogue) peer
            answered, msg = await listener.responses.get()
    assert msg == codec.PredictResponse(msg_id, [str(float(msg_id) + 1).encode()])
