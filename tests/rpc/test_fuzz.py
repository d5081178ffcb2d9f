"""Hypothesis fuzzing of the ZMTP parser and the RPC codec, offline and against a live RpcServer.

Whatever bytes or frames arrive, the parser and codec may only raise their own errors (ZmtpError,
ProtocolError), which the server turns into closing that one connection; anything else would escape
`data_received`. The parser must also never hold more than its limits allow between feeds.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipper.rpc import codec, zmtp
from clipper.rpc.server import Replica, RpcServer
from clipper.runtime.server import ModelContainer
from clipper.settings import ContainerSettings
from clipper.types import InputType
from tests.rpc.conftest import WAIT_S, RecordingListener, add_one, predict_once

LIMITS = zmtp.Limits(message_bytes=512, message_frames=8, command_bytes=64)
# Between feeds the parser holds at most an incomplete message plus one incomplete frame (and its header).
MOST_BUFFERED = max(zmtp.GREETING_SIZE, LIMITS.message_bytes + LIMITS.command_bytes + 9)

frames_st = st.lists(st.binary(max_size=300), min_size=1, max_size=6)


@st.composite
def valid_stream(draw: st.DrawFn) -> tuple[bytes, list[list[bytes]]]:
    """A well-formed client stream: greeting, READY, then a few messages and PINGs."""
    messages = draw(st.lists(frames_st, max_size=4))
    wire = zmtp.greeting(as_server=False) + zmtp.ready(b"DEALER")
    for frames in messages:
        wire += zmtp.encode(frames)
        if draw(st.booleans()):
            wire += zmtp.command(b"PING", b"\x00\x01ctx")
    return wire, messages


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few bytes replaced, deleted or inserted."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        kind = draw(st.sampled_from(["replace", "delete", "insert"]))
        byte = draw(st.integers(0, 255))
        if kind == "replace" and out:
            out[pos] = byte
        elif kind == "delete" and out:
            del out[pos]
        else:
            out.insert(pos, byte)
    return bytes(out)


def _splits(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    for start, end in zip([0, *points], [*points, len(data)], strict=True):
        yield data[start:end]


def _feed_all(chunks: Iterator[bytes]) -> list[zmtp.Command | list[bytes]]:
    """Feed chunk by chunk until the parser refuses; only ZmtpError may stop it."""
    parser = zmtp.Parser(LIMITS)
    items: list[zmtp.Command | list[bytes]] = []
    for chunk in chunks:
        try:
            items += parser.feed(chunk)
        except zmtp.ZmtpError:
            return items
        assert parser.buffered <= MOST_BUFFERED
    return items


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.binary(max_size=2000), st.lists(st.integers(0, 4000), max_size=8))
def test_parser_on_random_bytes_raises_only_zmtp_errors(greeted, data, cuts):
    prefix = zmtp.greeting(as_server=False) if greeted else b""
    _feed_all(_splits(prefix + data, cuts))


@settings(max_examples=300, deadline=None)
@given(st.data(), valid_stream(), st.lists(st.integers(0, 4000), max_size=8))
def test_parser_on_mutated_streams_raises_only_zmtp_errors(data, stream, cuts):
    wire, messages = stream
    # Unmutated, every message fitting the limits comes back intact whatever the split.
    if all(sum(map(len, m)) <= LIMITS.message_bytes and len(m) <= LIMITS.message_frames for m in messages):
        parsed = [i for i in _feed_all(_splits(wire, cuts)) if isinstance(i, list)]
        assert parsed == messages
    _feed_all(_splits(data.draw(mutated(wire)), cuts))


container_messages = st.sampled_from(
    [
        codec.encode_heartbeat(),
        codec.encode_new_container("m", "1", InputType.DOUBLES, follows_frontends=True),
        codec.encode_response(7, [b"1.0", b"", b"abc"]),
        codec.encode_container_error(3, "model raised"),
    ]
)
frontend_messages = st.sampled_from(
    [
        codec.encode_heartbeat_reply(True),
        codec.encode_predict_request(5, InputType.DOUBLES, [b"\x00" * 8, b"\x01" * 16]),
        codec.encode_predict_request(6, InputType.STRINGS, [b"abc"]),
        codec.encode_frontend_list(["127.0.0.1:7000", "10.0.0.2:7001"]),
    ]
)


@st.composite
def mutated_frames(draw: st.DrawFn, frames: list[bytes]) -> list[bytes]:
    """A message with a frame dropped, added, or its bytes mutated."""
    out = list(frames)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(out)))
        kind = draw(st.sampled_from(["drop", "add", "mutate"]))
        if kind == "drop" and i < len(out):
            del out[i]
        elif kind == "mutate" and i < len(out):
            out[i] = draw(mutated(out[i]))
        else:
            out.insert(i, draw(st.binary(max_size=16)))
    return out


def _decodes_or_protocol_error(decode: Any, frames: list[bytes]) -> None:
    try:
        decode(frames)
    except codec.ProtocolError:
        pass  # the one error a malformed message may cause


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_codec_on_random_frames_raises_only_protocol_errors(frames):
    _decodes_or_protocol_error(codec.decode_container_message, frames)
    _decodes_or_protocol_error(codec.decode_frontend_message, frames)


@settings(max_examples=300, deadline=None)
@given(st.data(), container_messages, frontend_messages)
def test_codec_on_mutated_messages_raises_only_protocol_errors(data, to_frontend, to_container):
    _decodes_or_protocol_error(codec.decode_container_message, data.draw(mutated_frames(to_frontend)))
    _decodes_or_protocol_error(codec.decode_frontend_message, data.draw(mutated_frames(to_container)))


# --- a live server --------------------------------------------------------------------------------


class LiveServer:
    """An RpcServer on its own event loop thread, with our runtime registered as model `good`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="rpc-loop", daemon=True)
        self.thread.start()
        self.listener, self.server = self.call(self._start())
        settings_ = ContainerSettings(
            model_name="good", model_version="1", port=self.server.port, heartbeat_interval_ms=50
        )
        self.container = ModelContainer(settings_, add_one)
        self.container_thread = threading.Thread(target=self.container.run, daemon=True)
        self.container_thread.start()
        deadline = time.monotonic() + WAIT_S
        while not (good := [r for r in self.listener.added if r.model_name == "good"]):
            assert time.monotonic() < deadline, "the good container did not register"
            time.sleep(0.01)
        self.good: Replica = good[0]
        self.msg_ids = iter(range(1_000_000))

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT_S)

    async def _start(self) -> tuple[RecordingListener, RpcServer]:
        listener = RecordingListener()
        server = RpcServer("127.0.0.1", 0, listener, limits=LIMITS, handshake_timeout_ms=2_000)
        await server.start()
        return listener, server

    def close(self) -> None:
        self.container.stop()
        self.container_thread.join(WAIT_S)
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_S)
        self.loop.close()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = LiveServer()
    yield server
    server.close()


def _rogue_script() -> bytes:
    """What a rogue might send after connecting: a handshake, a registration, an answer, a heartbeat."""
    return (
        zmtp.greeting(as_server=False)
        + zmtp.ready(b"DEALER")
        + zmtp.encode(codec.encode_heartbeat())
        + zmtp.encode(codec.encode_new_container("rogue", "1", InputType.DOUBLES))
        + zmtp.encode(codec.encode_response(1, [b"x" * 40]))
        + zmtp.command(b"PING", b"\x00\x01")
        + struct.pack(">BB", 0, 0)
    )


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(_rogue_script()), st.binary(max_size=600)))
def test_a_rogue_sending_garbage_never_disturbs_a_good_container(live, garbage):
    with socket.create_connection(("127.0.0.1", live.server.port), timeout=WAIT_S) as rogue:
        rogue.sendall(garbage)  # the connection stays open (or is closed by the server) meanwhile
        live.call(predict_once(live.server, live.listener, live.good, next(live.msg_ids)))
    assert live.good not in live.listener.removed
