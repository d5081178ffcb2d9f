"""ZMTP 3.0 framing, checked against itself and against libzmq (pyzmq) on real sockets."""

from __future__ import annotations

import socket

import pytest
import zmq

from clipper.rpc import zmtp


def test_greeting_is_64_bytes_with_null_mechanism():
    g = zmtp.greeting(as_server=True)
    assert len(g) == zmtp.GREETING_SIZE
    zmtp.check_greeting(g)


@pytest.mark.parametrize(
    ("patch", "message"),
    [((0, 0x00), "signature"), ((10, 2), "version 3 is required"), ((12, ord("P")), "mechanism")],
)
def test_bad_greetings_are_refused(patch, message):
    g = bytearray(zmtp.greeting(as_server=False))
    g[patch[0]] = patch[1]
    with pytest.raises(zmtp.ZmtpError, match=message):
        zmtp.check_greeting(bytes(g))


def test_messages_survive_any_split_of_the_byte_stream():
    long_frame = bytes(range(256)) * 3  # needs the 8-byte size form
    frames = [b"", b"\x01\x00\x00\x00", long_frame, b"x"]
    wire = zmtp.greeting(False) + zmtp.ready(b"DEALER") + zmtp.encode(frames) + zmtp.encode([b"second"])
    for step in (1, 7, 64, 300, len(wire)):
        parser = zmtp.Parser()
        items = [item for i in range(0, len(wire), step) for item in parser.feed(wire[i : i + step])]
        assert items[0] == zmtp.Command(b"READY", zmtp.ready(b"DEALER")[2 + 6 :])
        assert zmtp.ready_properties(items[0].body) == {"Socket-Type": b"DEALER", "Identity": b""}
        assert items[1:] == [frames, [b"second"]]


def test_a_ping_is_answered_with_its_context():
    ping = zmtp.Command(b"PING", b"\x00\x0a" + b"ctx")
    parser = zmtp.Parser()
    (pong,) = parser.feed(zmtp.greeting(True) + zmtp.pong(ping))
    assert pong == zmtp.Command(b"PONG", b"ctx")


def test_libzmq_router_and_our_dealer_exchange_messages():
    """Our bytes are ZeroMQ's: a libzmq ROUTER accepts our handshake and frames, and we parse its."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(zmtp.greeting(as_server=False) + zmtp.ready(b"DEALER"))
            parser = zmtp.Parser()
            items: list[object] = []
            while not items:
                items += parser.feed(sock.recv(4096))
            assert isinstance(items[0], zmtp.Command) and items[0].name == b"READY"
            assert zmtp.ready_properties(items[0].body)["Socket-Type"] == b"ROUTER"
            sock.sendall(zmtp.encode([b"", b"hello", b"x" * 1000]))
            assert router.poll(5000)
            routing_id, *frames = router.recv_multipart()
            assert frames == [b"", b"hello", b"x" * 1000]
            router.send_multipart([routing_id, b"", b"back"])
            received: list[object] = []
            while not received:
                received += parser.feed(sock.recv(4096))
            assert received == [[b"", b"back"]]
    finally:
        router.close(0)
        ctx.term()
