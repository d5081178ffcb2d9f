"""RpcServer on real sockets: limits, handshake deadline, connection cap, batch bound, PLAIN with a token."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest
import zmq
import zmq.asyncio
import zmq.utils.monitor
from pydantic import SecretStr

from clipper.rpc import codec, zmtp
from clipper.rpc.server import Replica
from tests.rpc.conftest import RawClient, RecordingListener, eventually, predict_once

TOKEN = "s3cret-token"


async def registered(listener: RecordingListener, model: str) -> Replica:
    await eventually(lambda: any(r.model_name == model for r in listener.added), f"{model} to register")
    return next(r for r in listener.added if r.model_name == model)


def log_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


_U64_MAX_HALF = 2**63


@pytest.mark.parametrize(
    ("evil", "limit"),
    [
        (b"\x02" + struct.pack(">Q", _U64_MAX_HALF), "limit of 4096"),  # one frame announcing 2^63 bytes
        (zmtp.encode([b"", b"x" * 3000, b"y" * 3000]), "limit of 4096"),  # frames adding up past the limit
        (zmtp.encode([b""] * 9), "over 8 frames"),
        (zmtp.command(b"PING", b"\x00\x00" + b"c" * 600), "command of 607 bytes exceeds the limit of 512"),
    ],
    ids=["huge-frame", "big-message", "many-frames", "big-command"],
)
async def test_a_limit_breach_closes_that_connection_only(make_server, start_container, caplog, evil, limit):
    limits = zmtp.Limits(message_bytes=4096, message_frames=8, command_bytes=512)
    server, listener = await make_server(limits=limits)
    start_container(server.port)
    good = await registered(listener, "good")
    rogue = await RawClient.connect(server.port)
    await rogue.handshake()
    await rogue.register("rogue")
    await registered(listener, "rogue")
    caplog.set_level(logging.WARNING, "clipper.rpc.server")
    rogue.send(evil)
    seen = await rogue.until_closed()
    assert any(isinstance(i, zmtp.Command) and i.name == b"ERROR" for i in seen)
    (line,) = log_lines(caplog, "Closing RPC connection")
    assert limit in line and f"127.0.0.1:{rogue.writer.get_extra_info('sockname')[1]}" in line
    await eventually(lambda: [r.model_name for r in listener.removed] == ["rogue"], "the rogue's removal")
    await predict_once(server, listener, good, 1)


async def test_before_registration_even_a_modest_frame_is_refused(make_server):
    server, _ = await make_server()
    rogue = await RawClient.connect(server.port)
    await rogue.handshake()
    rogue.send(b"\x03" + struct.pack(">Q", 1024 * 1024))  # a 1 MiB frame, fine later, not from a stranger
    assert await rogue.until_closed()


@pytest.mark.parametrize(
    "sends",
    [b"", zmtp.greeting(False), zmtp.greeting(False) + zmtp.ready(b"DEALER")],
    ids=["nothing", "greeting", "greeting-and-ready"],
)
async def test_a_connection_that_does_not_register_in_time_is_closed(make_server, start_container, sends):
    server, listener = await make_server(handshake_timeout_ms=200)
    idle = await RawClient.connect(server.port)
    idle.send(sends)
    await idle.until_closed()
    start_container(server.port)  # a real container registers well within the deadline and stays
    good = await registered(listener, "good")
    await asyncio.sleep(0.3)  # past the handshake deadline: the registered container must survive it
    await predict_once(server, listener, good, 2)
    assert listener.removed == []


async def test_connections_past_the_cap_are_closed_and_logged_once_per_burst(make_server, caplog):
    server, _ = await make_server(max_connections=2)
    caplog.set_level(logging.WARNING, "clipper.rpc.server")
    kept = [await RawClient.connect(server.port) for _ in range(2)]
    await kept[0].handshake()
    refused = [await RawClient.connect(server.port) for _ in range(3)]
    for client in refused:
        assert await client.until_closed() == []  # closed at once, before any greeting
    assert len(log_lines(caplog, "connection limit (2) reached")) == 1
    await kept[1].handshake()  # the open ones are untouched
    kept[0].close()
    while True:  # the slot frees once the server has seen the close
        newcomer = await RawClient.connect(server.port)
        newcomer.send(zmtp.greeting(as_server=False) + zmtp.ready(b"DEALER"))
        if await newcomer.next() is not None:
            break
    assert len(log_lines(caplog, "connection limit (2) reached")) == 1
    assert len(log_lines(caplog, "accepted again")) == 1


@pytest.mark.parametrize("heartbeats", [True, False], ids=["heartbeating", "silent"])
async def test_a_replica_holding_a_batch_too_long_is_dropped(make_server, heartbeats):
    server, listener = await make_server(heartbeat_interval_ms=20, batch_timeout_ms=200)
    holder = await RawClient.connect(server.port)
    await holder.handshake()
    await holder.register("holder")
    replica = await registered(listener, "holder")
    server.send_predict(replica, 5, [b"\x00" * 8])
    batch = await holder.next()
    assert codec.decode_frontend_message(batch).msg_id == 5  # type: ignore[arg-type, union-attr]

    async def keep_heartbeating() -> None:
        while True:
            holder.send(zmtp.encode(codec.encode_heartbeat()))
            await asyncio.sleep(0.02)

    beating = asyncio.create_task(keep_heartbeating()) if heartbeats else None
    try:
        await holder.until_closed()
    finally:
        if beating is not None:
            beating.cancel()
    assert listener.removed == [replica]


async def test_the_batch_bound_is_never_below_the_longest_slo(make_server):
    now = [0]
    asked = [0]

    def longest_slo_ns() -> int:
        asked[0] += 1
        return 10_000_000_000

    server, listener = await make_server(
        heartbeat_interval_ms=10,
        batch_timeout_ms=100,
        min_batch_timeout_ns=longest_slo_ns,
        clock=lambda: now[0],
    )
    holder = await RawClient.connect(server.port)
    await holder.handshake()
    await holder.register("holder")
    replica = await registered(listener, "holder")
    server.send_predict(replica, 1, [b"\x00" * 8])
    now[0] = 5_000_000_000  # past batch_timeout_ms, short of the 10 s SLO
    seen = asked[0]
    await eventually(lambda: asked[0] >= seen + 2, "two liveness rounds")
    assert listener.removed == []
    now[0] = 10_100_000_000
    seen = asked[0]
    await eventually(lambda: listener.removed == [replica], "the replica's removal past the SLO")


# --- PLAIN: a shared secret -------------------------------------------------------------------------


async def test_our_runtime_presents_its_token_and_is_served(make_server, start_container):
    server, listener = await make_server(rpc_token=SecretStr(TOKEN))
    start_container(server.port, rpc_token=TOKEN)
    replica = await registered(listener, "good")
    await predict_once(server, listener, replica, 3)


async def test_a_runtime_with_a_token_still_talks_to_a_frontend_without_one(make_server, start_container):
    server, listener = await make_server()
    start_container(server.port, rpc_token=TOKEN)
    replica = await registered(listener, "good")
    await predict_once(server, listener, replica, 4)


@pytest.mark.parametrize("token", [None, "not-the-token"], ids=["no-token", "wrong-token"])
async def test_a_runtime_without_the_token_is_refused_and_says_why(
    make_server, start_container, caplog, token
):
    caplog.set_level(logging.INFO)
    server, listener = await make_server(rpc_token=SecretStr(TOKEN))
    start_container(server.port, rpc_token=token)
    await eventually(
        lambda: log_lines(caplog, "CLIPPER_RPC_TOKEN is missing or wrong") != [], "the runtime's error"
    )
    if token is not None:
        await eventually(lambda: log_lines(caplog, "wrong RPC token") != [], "the frontend's log line")
    assert listener.added == []
    assert not [r for r in caplog.records if TOKEN in r.getMessage() or "not-the-token" in r.getMessage()]


async def test_a_null_client_is_refused_by_a_frontend_with_a_token(make_server, caplog):
    caplog.set_level(logging.WARNING, "clipper.rpc.server")
    server, listener = await make_server(rpc_token=SecretStr(TOKEN))
    client = await RawClient.connect(server.port)
    client.send(zmtp.greeting(as_server=False) + zmtp.ready(b"DEALER"))
    seen = await client.until_closed()
    assert [i.name for i in seen if isinstance(i, zmtp.Command)] == [b"ERROR"]
    assert len(log_lines(caplog, "CLIPPER_RPC_TOKEN")) == 1
    assert listener.added == []


_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
    zmq.EVENT_DISCONNECTED,
}


@pytest.mark.parametrize(
    ("password", "accepted"),
    [(TOKEN, True), (None, False), ("not-the-token", False)],
    ids=["token", "no-credentials", "wrong-password"],
)
async def test_a_libzmq_dealer_is_accepted_only_with_the_token(make_server, password, accepted):
    """A libzmq DEALER with zmq.PLAIN_USERNAME/PASSWORD passes our PLAIN handshake; without, it is refused."""
    server, _ = await make_server(rpc_token=SecretStr(TOKEN))
    context = zmq.asyncio.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    if password is not None:
        dealer.setsockopt(zmq.PLAIN_USERNAME, b"anyone")
        dealer.setsockopt(zmq.PLAIN_PASSWORD, password.encode())
    monitor = dealer.get_monitor_socket()
    try:
        dealer.connect(f"tcp://127.0.0.1:{server.port}")
        events: list[int] = []
        async with asyncio.timeout(5):
            while not events or events[-1] not in {zmq.EVENT_HANDSHAKE_SUCCEEDED, *_FAILED}:
                events.append(
                    zmq.utils.monitor.parse_monitor_message(await monitor.recv_multipart())["event"]
                )
        assert (events[-1] == zmq.EVENT_HANDSHAKE_SUCCEEDED) is accepted, events
        if accepted:
            await dealer.send_multipart(codec.encode_heartbeat())
            reply = await asyncio.wait_for(dealer.recv_multipart(), 5)
            assert reply == codec.encode_heartbeat_reply(True)
    finally:
        dealer.disable_monitor()
        monitor.close(0)
        dealer.close(0)
        context.term()
