"""ModelContainer against a real ROUTER socket: handshake, predict per input type, errors, reconnects."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest
import zmq
from zmq.auth.thread import ThreadAuthenticator

from clipper.rpc import codec
from clipper.settings import ContainerSettings
from clipper.types import InputType
from tests.conftest import wait_until


def test_handshake_announces_model_and_rpc_version(frontend, make_settings, start_container):
    start_container(make_settings(input_type=" Strings "), lambda xs: [str(x) for x in xs])
    routing_id, first = frontend.recv()
    assert first == codec.Heartbeat()
    frontend.send(routing_id, codec.encode_heartbeat_reply(True))
    frames = frontend.recv_raw()
    assert frames[1:] == [b"", b"\x00\x00\x00\x00", b"m", b"1", b"4", b"\x03\x00\x00\x00", b"frontend-list"]
    assert codec.decode_container_message(frames[1:]) == codec.NewContainer(
        "m", "1", InputType.STRINGS, 3, follows_frontends=True
    )


def test_idle_container_keeps_heartbeating(frontend, make_settings, start_container):
    start_container(make_settings(), list)
    routing_id, _ = frontend.register()
    for _ in range(3):
        assert frontend.recv() == (routing_id, codec.Heartbeat())
        frontend.send(routing_id, codec.encode_heartbeat_reply(False))


def _pack(fmt: str, *values: object) -> bytes:
    return struct.pack(f"<{len(values)}{fmt}", *values)


# input type, raw inputs, dtype and values the model must see
EQUAL = [
    (InputType.BYTES, [b"\x01\xff", b"\x7f\x80"], np.int8, [[1, -1], [127, -128]]),
    (InputType.INTEGERS, [_pack("i", 1, -2), _pack("i", 3, 4)], np.int32, [[1, -2], [3, 4]]),
    (InputType.FLOATS, [_pack("f", 0.5, 1.5), _pack("f", 2.5, -1)], np.float32, [[0.5, 1.5], [2.5, -1]]),
    (InputType.DOUBLES, [_pack("d", 1.0, 2.0), _pack("d", 3.0, 4.5)], np.float64, [[1.0, 2.0], [3.0, 4.5]]),
]


@pytest.mark.parametrize(("input_type", "raw", "dtype", "values"), EQUAL, ids=lambda v: str(v))
def test_equal_length_numeric_inputs_arrive_as_one_2d_array(
    frontend, make_settings, start_container, input_type, raw, dtype, values
):
    seen = []

    def predict(inputs):
        seen.append(inputs)
        return [str(row.sum()) for row in inputs]

    start_container(make_settings(input_type=input_type.wire_name), predict)
    routing_id, _ = frontend.register()
    reply = frontend.predict(routing_id, 7, input_type, raw)
    (inputs,) = seen
    assert inputs.dtype == dtype and inputs.shape == (2, 2)
    assert inputs.tolist() == values
    assert inputs.flags.writeable
    assert reply == codec.PredictResponse(7, [str(np.array(v, dtype).sum()).encode() for v in values])


RAGGED = [
    (InputType.BYTES, [b"\x01", b"\x02\xfe"], np.int8, [[1], [2, -2]]),
    (InputType.INTEGERS, [_pack("i", 1), _pack("i", 2, 3)], np.int32, [[1], [2, 3]]),
    (InputType.FLOATS, [_pack("f", 0.5), _pack("f", 1, 2, 3)], np.float32, [[0.5], [1, 2, 3]]),
    (InputType.DOUBLES, [_pack("d", 1.0, 2.0, 3.0), _pack("d", 4.0)], np.float64, [[1, 2, 3], [4]]),
]


@pytest.mark.parametrize(("input_type", "raw", "dtype", "values"), RAGGED, ids=lambda v: str(v))
def test_unequal_length_numeric_inputs_arrive_as_object_array(
    frontend, make_settings, start_container, input_type, raw, dtype, values
):
    seen = []

    def predict(inputs):
        seen.append(inputs)
        return [len(row) for row in inputs]

    start_container(make_settings(input_type=input_type.wire_name), predict)
    routing_id, _ = frontend.register()
    reply = frontend.predict(routing_id, 1, input_type, raw)
    (inputs,) = seen
    assert inputs.dtype == object and inputs.shape == (2,)
    assert [row.dtype for row in inputs] == [dtype, dtype]
    assert [row.tolist() for row in inputs] == values
    assert reply == codec.PredictResponse(1, [str(len(v)).encode() for v in values])


@pytest.mark.parametrize(
    "raw", [[b"ab", b"cd"], [b"hello", b"", "h\u00e9".encode()]], ids=["equal", "unequal"]
)
def test_strings_arrive_as_object_array_of_bytes(frontend, make_settings, start_container, raw):
    seen = []

    def predict(inputs):
        seen.append(inputs)
        return [s.decode().upper() for s in inputs]

    start_container(make_settings(input_type="strings"), predict)
    routing_id, _ = frontend.register()
    reply = frontend.predict(routing_id, 2, InputType.STRINGS, raw)
    (inputs,) = seen
    assert inputs.dtype == object and inputs.shape == (len(raw),)
    assert list(inputs) == raw and all(type(s) is bytes for s in inputs)
    assert reply == codec.PredictResponse(2, [s.decode().upper().encode() for s in raw])


def test_outputs_are_converted_with_str(frontend, make_settings, start_container):
    start_container(make_settings(), lambda xs: xs.sum(axis=1))
    routing_id, _ = frontend.register()
    reply = frontend.predict(routing_id, 3, InputType.DOUBLES, [_pack("d", 1.0, 2.0), _pack("d", 3.0, 4.5)])
    assert reply == codec.PredictResponse(3, [b"3.0", b"7.5"])


def test_exception_in_model_is_reported_and_container_keeps_serving(frontend, make_settings, start_container):
    def predict(inputs):
        if inputs[0][0] < 0:
            raise ValueError("negative input")
        return [str(x) for x in inputs[:, 0]]

    start_container(make_settings(), predict)
    routing_id, _ = frontend.register()
    for msg_id in (10, 11):
        reply = frontend.predict(routing_id, msg_id, InputType.DOUBLES, [_pack("d", -1.0)])
        assert reply == codec.ContainerError(msg_id, "model raised ValueError: negative input")
    assert frontend.predict(routing_id, 12, InputType.DOUBLES, [_pack("d", 2.0)]) == codec.PredictResponse(
        12, [b"2.0"]
    )


@pytest.mark.parametrize(
    ("predict", "reason"),
    [
        (lambda xs: ["only one"], "model returned 1 outputs for 2 inputs"),
        (lambda xs: 42, "model returned int, expected a list of 2 outputs"),
        (lambda xs: None, "model returned NoneType, expected a list of 2 outputs"),
    ],
    ids=["count", "int", "none"],
)
def test_wrong_outputs_are_reported(frontend, make_settings, start_container, predict, reason):
    start_container(make_settings(), predict)
    routing_id, _ = frontend.register()
    reply = frontend.predict(routing_id, 5, InputType.DOUBLES, [_pack("d", 1.0), _pack("d", 2.0)])
    assert reply == codec.ContainerError(5, reason)
    again = frontend.predict(routing_id, 6, InputType.DOUBLES, [_pack("d", 1.0), _pack("d", 2.0)])
    assert again == codec.ContainerError(6, reason)  # the container is still serving


def test_malformed_input_is_reported(frontend, make_settings, start_container):
    start_container(make_settings(), lambda xs: [str(x) for x in xs])
    routing_id, _ = frontend.register()
    reply = frontend.predict(routing_id, 9, InputType.DOUBLES, [b"\x00\x01\x02"])
    assert isinstance(reply, codec.ContainerError) and "not a multiple of 8" in reply.message


def test_malformed_frames_are_ignored(frontend, make_settings, start_container):
    start_container(make_settings(), lambda xs: [str(x) for x in xs[:, 0]])
    routing_id, _ = frontend.register()
    frontend.send(routing_id, [b"", b"\x03\x00\x00\x00", b"\x01\x00"])
    reply = frontend.predict(routing_id, 4, InputType.DOUBLES, [_pack("d", 8.0)])
    assert reply == codec.PredictResponse(4, [b"8.0"])


def test_reconnects_with_a_new_socket_when_frontend_goes_silent(frontend, make_settings, start_container):
    start_container(
        make_settings(ip="localhost", frontend_timeout_ms=300), lambda xs: [str(x) for x in xs[:, 0]]
    )
    first_id, _ = frontend.register()
    # The frontend now stops answering; the container must give up on this session and open a new one.
    while True:
        routing_id, message = frontend.recv()
        if routing_id != first_id:
            break
        assert message == codec.Heartbeat()
    assert message == codec.Heartbeat()
    frontend.send(routing_id, codec.encode_heartbeat_reply(True))
    new_id, announced = frontend.expect(codec.NewContainer)
    assert new_id == routing_id and announced.model_name == "m"
    reply = frontend.predict(routing_id, 0, InputType.DOUBLES, [_pack("d", 1.5)])
    assert reply == codec.PredictResponse(0, [b"1.5"])


def test_container_started_before_the_frontend_registers(zmq_context, start_container):
    """ZeroMQ queues the first heartbeat until the ROUTER binds, as with Clipper's containers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ContainerSettings(model_name="late", model_version="2", port=port, heartbeat_interval_ms=50)
    start_container(settings, lambda xs: [str(x) for x in xs])
    router = zmq_context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(f"tcp://127.0.0.1:{port}")
    try:
        assert router.poll(10_000), "no heartbeat reached the late frontend"
        _, *frames = router.recv_multipart()
        assert codec.decode_container_message(frames) == codec.Heartbeat()
    finally:
        router.close()


def test_presents_its_token_to_a_libzmq_router_that_asks_for_plain(zmq_context, start_container):
    """Our PLAIN client matches libzmq: a ROUTER with PLAIN_SERVER and a ZAP handler takes us in."""
    authenticator = ThreadAuthenticator(zmq_context)
    authenticator.start()
    authenticator.configure_plain(domain="*", passwords={"clipper": "tok"})
    router = zmq_context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.PLAIN_SERVER, 1)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        settings = ContainerSettings(
            model_name="m", model_version="1", port=port, heartbeat_interval_ms=50, rpc_token="tok"
        )
        start_container(settings, lambda xs: [str(x) for x in xs])
        assert router.poll(10_000), "no heartbeat over PLAIN"
        _, *frames = router.recv_multipart()
        assert codec.decode_container_message(frames) == codec.Heartbeat()
    finally:
        router.close()
        authenticator.stop()


def test_without_a_token_it_says_so_and_keeps_retrying(zmq_context, start_container, caplog):
    router = zmq_context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.PLAIN_SERVER, 1)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        settings = ContainerSettings(model_name="m", model_version="1", port=port, heartbeat_interval_ms=50)
        start_container(settings, lambda xs: [str(x) for x in xs])
        wait_until(
            lambda: any("CLIPPER_RPC_TOKEN is missing or wrong" in r.getMessage() for r in caplog.records),
            timeout_s=10,
            what="the missing-token error",
        )
        assert not router.poll(0)
    finally:
        router.close()
