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


LIMITS = zmtp.Limits(message_bytes=1000, message_frames=4, command_bytes=100)


def _greeted_parser() -> zmtp.Parser:
    parser = zmtp.Parser(LIMITS)
    assert list(parser.feed(zmtp.greeting(as_server=False))) == []
    return parser


def test_a_frame_announcing_more_than_the_limit_is_refused_from_its_header_alone():
    parser = _greeted_parser()
    with pytest.raises(zmtp.LimitExceeded, match="limit of 1000"):
        list(parser.feed(b"\x02" + (2**63).to_bytes(8, "big")))  # 2^63 bytes announced, none sent
    assert parser.buffered <= 9


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (zmtp.encode([b"a" * 600, b"b" * 600]), "limit of 1000"),
        (zmtp.encode([b""] * 5), "over 4 frames"),
        (zmtp.command(b"READY", b"p" * 200), "limit of 100"),
    ],
    ids=["message-bytes", "frames", "command-bytes"],
)
def test_messages_and_commands_past_the_limits_are_refused(wire, message):
    with pytest.raises(zmtp.LimitExceeded, match=message):
        list(_greeted_parser().feed(wire))


def test_messages_at_the_limits_pass():
    frames = [b"a" * 250] * 4
    wire = zmtp.encode(frames) + zmtp.command(b"PING", b"\x00\x00" + b"c" * 93)
    assert list(_greeted_parser().feed(wire)) == [frames, zmtp.Command(b"PING", b"\x00\x00" + b"c" * 93)]


@pytest.mark.parametrize("field", ["message_bytes", "message_frames", "command_bytes"])
def test_limits_must_be_positive(field):
    with pytest.raises(ValueError, match=f"Limits.{field} must be positive"):
        zmtp.Limits(**{field: 0})


def test_plain_greeting_and_commands_round_trip():
    parser = zmtp.Parser()
    wire = (
        zmtp.greeting(False, zmtp.PLAIN)
        + zmtp.hello(b"user", b"pass")
        + zmtp.WELCOME
        + zmtp.initiate(b"DEALER")
    )
    hello, welcome, initiate = parser.feed(wire)
    assert isinstance(hello, zmtp.Command) and isinstance(initiate, zmtp.Command)
    assert parser.mechanism == zmtp.PLAIN
    assert zmtp.hello_credentials(hello.body) == (b"user", b"pass")
    assert welcome == zmtp.Command(b"WELCOME", b"")
    assert zmtp.ready_properties(initiate.body)["Socket-Type"] == b"DEALER"


@pytest.mark.parametrize("body", [b"", b"\x05ab", b"\x01a\x05xy", b"\x01a\x01xy"])
def test_malformed_hello_is_a_zmtp_error(body):
    with pytest.raises(zmtp.ZmtpError, match="malformed HELLO"):
        zmtp.hello_credentials(body)


@pytest.mark.parametrize("body", [b"\x0bSocket-Type", b"\x01a\x00\x00\x00\x09abc", b"\x09ab"])
def test_malformed_metadata_is_a_zmtp_error(body):
    with pytest.raises(zmtp.ZmtpError, match="metadata"):
        zmtp.ready_properties(body)


def test_limits_raised_while_a_feed_yields_apply_to_the_next_message():
    """The frontend raises the limits when a NewContainer is yielded; the next (large) answer must pass."""
    parser = zmtp.Parser(zmtp.Limits(message_bytes=100, message_frames=4, command_bytes=100))
    for _ in parser.feed(zmtp.greeting(as_server=False) + zmtp.encode([b"", b"new container"])):
        parser.limits = zmtp.Limits(message_bytes=10_000, message_frames=4, command_bytes=100)
    big = [b"", b"x" * 5000]
    assert list(parser.feed(zmtp.encode(big))) == [big]
