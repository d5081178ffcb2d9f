"""RPC v3 codec: reference §4.10's worked example byte for byte, round trips, and malformed frames."""

from __future__ import annotations

import struct

import pytest

from clipper.rpc import codec
from clipper.types import InputType


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def u64s(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


# §4.10: one request with two `doubles` inputs (message id 7) and its response, written out in hex.
REQUEST_FRAMES = [
    b"",
    bytes.fromhex("03000000"),
    bytes.fromhex("01000000"),
    bytes.fromhex("07000000"),
    bytes.fromhex("00000000"),
    bytes.fromhex("2000000000000000"),
    bytes.fromhex("0300000000000000020000000000000010000000000000001000000000000000"),
    bytes.fromhex("000000000000f03f0000000000000040"),
    bytes.fromhex("00000000000008400000000000001240"),
]
RESPONSE_FRAMES = [
    b"",
    bytes.fromhex("01000000"),
    bytes.fromhex("07000000"),
    bytes.fromhex("1800000000000000"),
    bytes.fromhex("020000000000000003000000000000000300000000000000"),
    bytes.fromhex("332e30"),
    bytes.fromhex("372e35"),
]
DOUBLES_INPUTS = [struct.pack("<2d", 1.0, 2.0), struct.pack("<2d", 3.0, 4.5)]


def test_worked_example_request_bytes():
    assert codec.encode_predict_request(7, InputType.DOUBLES, DOUBLES_INPUTS) == REQUEST_FRAMES
    assert codec.decode_frontend_message(REQUEST_FRAMES) == codec.PredictRequest(
        7, InputType.DOUBLES, DOUBLES_INPUTS
    )


def test_worked_example_response_bytes():
    assert codec.encode_response(7, [b"3.0", b"7.5"]) == RESPONSE_FRAMES
    assert codec.decode_container_message(RESPONSE_FRAMES) == codec.PredictResponse(7, [b"3.0", b"7.5"])


def test_worked_example_handshake_bytes():
    assert codec.encode_heartbeat() == [b"", bytes.fromhex("02000000")]
    assert codec.decode_container_message([b"", bytes.fromhex("02000000")]) == codec.Heartbeat()
    reply = [b"", bytes.fromhex("03000000"), bytes.fromhex("02000000"), bytes.fromhex("01000000")]
    assert codec.encode_heartbeat_reply(True) == reply
    assert codec.decode_frontend_message(reply) == codec.HeartbeatReply(request_metadata=True)
    announce = [b"", bytes.fromhex("00000000"), b"sum-model", b"1", b"3", bytes.fromhex("03000000")]
    assert codec.encode_new_container("sum-model", "1", InputType.DOUBLES) == announce
    assert codec.decode_container_message(announce) == codec.NewContainer(
        "sum-model", "1", InputType.DOUBLES, 3
    )


def test_keepalive_reply():
    frames = codec.encode_heartbeat_reply(False)
    assert frames == [b"", u32(3), u32(2), u32(0)]
    assert codec.decode_frontend_message(frames) == codec.HeartbeatReply(request_metadata=False)


def test_clipper_new_container_without_version_frame_decodes_as_version_0():
    """The frontend must refuse to register it (reference §4.3), so the codec reports the missing version."""
    message = codec.decode_container_message([b"", u32(0), b"m", b"1", b"3"])
    assert message == codec.NewContainer("m", "1", InputType.DOUBLES, 0)


@pytest.mark.parametrize("input_type", list(InputType))
@pytest.mark.parametrize(
    "inputs", [[], [b""], [b"a", b"bcd", b"\x00" * 1000]], ids=["none", "empty", "mixed"]
)
def test_predict_request_round_trip(input_type, inputs):
    frames = codec.encode_predict_request(2**32 - 1, input_type, inputs)
    assert codec.decode_frontend_message(frames) == codec.PredictRequest(2**32 - 1, input_type, inputs)


@pytest.mark.parametrize(
    "outputs", [[], [b""], ["h\u00e9".encode(), b"x" * 70_000]], ids=["none", "empty", "big"]
)
def test_response_round_trip(outputs):
    assert codec.decode_container_message(codec.encode_response(0, outputs)) == codec.PredictResponse(
        0, outputs
    )


def test_new_container_round_trip_keeps_any_version_string():
    frames = codec.encode_new_container("mod\u00e8le", "v2-beta", InputType.BYTES)
    assert codec.decode_container_message(frames) == codec.NewContainer(
        "mod\u00e8le", "v2-beta", InputType.BYTES, 3
    )


def test_container_error_round_trip():
    frames = codec.encode_container_error(9, "model raised ValueError: \u00e9")
    assert frames == [b"", u32(3), u32(9), "model raised ValueError: \u00e9".encode()]
    assert codec.decode_container_message(frames) == codec.ContainerError(
        9, "model raised ValueError: \u00e9"
    )


MALFORMED_FROM_CONTAINER = {
    "no frames": [],
    "no delimiter": [u32(2)],
    "non-empty delimiter": [b"x", u32(2)],
    "short type": [b"", b"\x02\x00"],
    "unknown type": [b"", u32(9)],
    "new container without fields": [b"", u32(0), b"m"],
    "bad input type code": [b"", u32(0), b"m", b"1", b"7", u32(3)],
    "non-numeric input type": [b"", u32(0), b"m", b"1", b"x", u32(3)],
    "non-utf8 model name": [b"", u32(0), b"\xff", b"1", b"3", u32(3)],
    "response without header": [b"", u32(1), u32(0)],
    "response short header": [b"", u32(1), u32(0), u64s(8), b"\x01\x00"],
    "response short message id": [b"", u32(1), b"\x00", u64s(16), u64s(1, 1), b"a"],
    "response missing output": [b"", u32(1), u32(0), u64s(24), u64s(2, 1, 1), b"a"],
    "response extra output": [b"", u32(1), u32(0), u64s(16), u64s(1, 1), b"a", b"b"],
    "error without reason": [b"", u32(3), u32(0)],
    "error short message id": [b"", u32(3), b"\x00", b"reason"],
}


@pytest.mark.parametrize("frames", MALFORMED_FROM_CONTAINER.values(), ids=MALFORMED_FROM_CONTAINER.keys())
def test_malformed_container_frames_raise_protocol_error(frames):
    with pytest.raises(codec.ProtocolError):
        codec.decode_container_message(frames)


MALFORMED_FROM_FRONTEND = {
    "no frames": [],
    "non-empty delimiter": [b"x", u32(3), u32(2), u32(0)],
    "short type": [b"", u32(3), b"\x02"],
    "unknown type": [b"", u32(3), u32(7)],
    "new container from frontend": [b"", u32(3), u32(0)],
    "heartbeat without heartbeat type": [b"", u32(3), u32(2)],
    "short heartbeat type": [b"", u32(3), u32(2), b"\x01"],
    "request without header": [b"", u32(3), u32(1), u32(0), u32(0)],
    "request short message id": [b"", u32(3), u32(1), b"\x00", u32(0), u64s(16), u64s(3, 0)],
    "request short header": [b"", u32(3), u32(1), u32(0), u32(0), u64s(8), u64s(3)],
    "request bad input type": [b"", u32(3), u32(1), u32(0), u32(0), u64s(16), u64s(9, 0)],
    "request missing input": [b"", u32(3), u32(1), u32(0), u32(0), u64s(24), u64s(3, 1, 8)],
    "request extra input": [b"", u32(3), u32(1), u32(0), u32(0), u64s(16), u64s(3, 0), b"a"],
}


@pytest.mark.parametrize("frames", MALFORMED_FROM_FRONTEND.values(), ids=MALFORMED_FROM_FRONTEND.keys())
def test_malformed_frontend_frames_raise_protocol_error(frames):
    with pytest.raises(codec.ProtocolError):
        codec.decode_frontend_message(frames)
