"""RPC v3 frames <-> typed messages (reference §4). Pure functions, no sockets; both sides use them.

Frames are given and returned without the ROUTER's routing-id frame. Everything is little-endian.
One extension: message type 3 (ContainerError) lets our runtime fail one batch with a reason instead
of exiting as Clipper's does; Clipper containers never send it and the frontend never requires it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from clipper.types import InputType

RPC_VERSION = 3
EMPTY = b""

MSG_NEW_CONTAINER = 0
MSG_CONTAINER_CONTENT = 1
MSG_HEARTBEAT = 2
MSG_CONTAINER_ERROR = 3
MSG_FRONTEND_LIST = 4

# Sent as an optional 7th NewContainer frame by containers that follow the list of live frontends.
CAPABILITY_FRONTEND_LIST = b"frontend-list"

HEARTBEAT_KEEPALIVE = 0
HEARTBEAT_REQUEST_METADATA = 1

REQUEST_PREDICT = 0

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_VERSION_FRAME = _U32.pack(RPC_VERSION)
_TYPE_FRAMES = {t: _U32.pack(t) for t in range(5)}


class ProtocolError(ValueError):
    """Frames that do not form an RPC v3 message."""


# --- container -> frontend ---------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Heartbeat:
    """A container's heartbeat; the frontend answers every one."""


@dataclass(slots=True, frozen=True)
class NewContainer:
    """A container's announcement: the model version it serves and its input type."""

    model_name: str
    model_version: str
    input_type: InputType
    rpc_version: int
    follows_frontends: bool = False


@dataclass(slots=True, frozen=True)
class PredictResponse:
    """The outputs of one batch, in request order, as raw UTF-8 bytes."""

    msg_id: int
    outputs: list[bytes]


@dataclass(slots=True, frozen=True)
class ContainerError:
    """A batch the container could not answer (model raised, wrong number of outputs)."""

    msg_id: int
    message: str


ContainerMessage = Heartbeat | NewContainer | PredictResponse | ContainerError


def decode_container_message(frames: list[bytes]) -> ContainerMessage:
    """Parse `[""][u32 type]...` as sent by a container's DEALER."""
    try:
        return _decode_container_message(frames)
    except ProtocolError:
        raise
    except (struct.error, IndexError, ValueError) as e:
        raise ProtocolError(f"malformed message: {e}") from e


def _decode_container_message(frames: list[bytes]) -> ContainerMessage:
    if len(frames) < 2 or frames[0] != EMPTY or len(frames[1]) != 4:
        raise ProtocolError("expected an empty delimiter and a u32 message type")
    (msg_type,) = _U32.unpack(frames[1])
    if msg_type == MSG_HEARTBEAT:
        return Heartbeat()
    if msg_type == MSG_CONTAINER_CONTENT:
        return _decode_response(frames)
    if msg_type == MSG_NEW_CONTAINER:
        if len(frames) < 5:
            raise ProtocolError("NewContainer needs model name, version and input type frames")
        rpc_version = _U32.unpack(frames[5])[0] if len(frames) > 5 and len(frames[5]) == 4 else 0
        try:
            input_type = InputType(int(frames[4].decode("ascii")))
        except ValueError as e:
            raise ProtocolError(f"unknown input type code {frames[4]!r}") from e
        follows = len(frames) > 6 and frames[6] == CAPABILITY_FRONTEND_LIST
        return NewContainer(frames[2].decode(), frames[3].decode(), input_type, rpc_version, follows)
    if msg_type == MSG_CONTAINER_ERROR:
        if len(frames) < 4:
            raise ProtocolError("ContainerError needs a message id and a reason")
        return ContainerError(_U32.unpack(frames[2])[0], frames[3].decode(errors="replace"))
    raise ProtocolError(f"unknown message type {msg_type}")


def _decode_response(frames: list[bytes]) -> PredictResponse:
    if len(frames) < 5:
        raise ProtocolError("ContainerContent needs message id, header length and header frames")
    msg_id = _U32.unpack(frames[2][:4])[0]
    header = frames[4]
    (n,) = _U64.unpack_from(header, 0)
    outputs = frames[5:]
    if len(outputs) != n or len(header) < 8 * (n + 1):
        raise ProtocolError(f"header announces {n} outputs, message carries {len(outputs)}")
    return PredictResponse(msg_id, outputs)


def encode_heartbeat() -> list[bytes]:
    """Container heartbeat `[""][u32 2]`."""
    return [EMPTY, _TYPE_FRAMES[MSG_HEARTBEAT]]


def encode_new_container(
    model_name: str, model_version: str, input_type: InputType, follows_frontends: bool = False
) -> list[bytes]:
    """Container metadata, sent in answer to a RequestContainerMetadata heartbeat.

    `follows_frontends` adds our capability frame: the frontend will then send FrontendList messages.
    """
    frames = [
        EMPTY,
        _TYPE_FRAMES[MSG_NEW_CONTAINER],
        model_name.encode(),
        model_version.encode(),
        str(int(input_type)).encode("ascii"),
        _VERSION_FRAME,
    ]
    if follows_frontends:
        frames.append(CAPABILITY_FRONTEND_LIST)
    return frames


def encode_response(msg_id: int, outputs: list[bytes]) -> list[bytes]:
    """One batch's outputs: `[""][u32 1][msg id][u64 H][u64 N, N x u64 len][out]...`."""
    n = len(outputs)
    header = struct.pack(f"<{n + 1}Q", n, *map(len, outputs))
    return [
        EMPTY,
        _TYPE_FRAMES[MSG_CONTAINER_CONTENT],
        _U32.pack(msg_id),
        _U64.pack(len(header)),
        header,
        *outputs,
    ]


def encode_container_error(msg_id: int, message: str) -> list[bytes]:
    """Fail one batch with a reason the frontend shows to the caller."""
    return [EMPTY, _TYPE_FRAMES[MSG_CONTAINER_ERROR], _U32.pack(msg_id), message.encode()]


# --- frontend -> container ---------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class HeartbeatReply:
    """The frontend's answer to a heartbeat; `request_metadata` asks the container to announce itself."""

    request_metadata: bool


@dataclass(slots=True, frozen=True)
class PredictRequest:
    """One batch of inputs of one type, as raw bytes per input."""

    msg_id: int
    input_type: InputType
    inputs: list[bytes]


@dataclass(slots=True, frozen=True)
class FrontendList:
    """Every live query frontend's RPC address (`host:port`); the container keeps a connection to each."""

    addresses: list[str]


FrontendMessage = HeartbeatReply | PredictRequest | FrontendList

_HEARTBEAT_REPLIES = {
    flag: [EMPTY, _VERSION_FRAME, _TYPE_FRAMES[MSG_HEARTBEAT], _U32.pack(int(flag))] for flag in (False, True)
}


def encode_heartbeat_reply(request_metadata: bool) -> list[bytes]:
    """`[""][u32 3][u32 2][u32 heartbeat type]`."""
    return _HEARTBEAT_REPLIES[request_metadata]


def encode_predict_request(msg_id: int, input_type: InputType, inputs: list[bytes]) -> list[bytes]:
    """`[""][u32 3][u32 1][u32 id][u32 0][u64 H][u64 type, u64 N, N x u64 len][in]...`."""
    n = len(inputs)
    header = struct.pack(f"<{n + 2}Q", int(input_type), n, *map(len, inputs))
    return [
        EMPTY,
        _VERSION_FRAME,
        _TYPE_FRAMES[MSG_CONTAINER_CONTENT],
        _U32.pack(msg_id),
        _U32.pack(REQUEST_PREDICT),
        _U64.pack(len(header)),
        header,
        *inputs,
    ]


def encode_frontend_list(addresses: list[str]) -> list[bytes]:
    """`[""][u32 3][u32 4][address]...`: only sent to containers that announced the capability."""
    return [EMPTY, _VERSION_FRAME, _TYPE_FRAMES[MSG_FRONTEND_LIST], *(a.encode() for a in addresses)]


def decode_frontend_message(frames: list[bytes]) -> FrontendMessage:
    """Parse what a container's DEALER receives: `[""][u32 version][u32 type]...`."""
    try:
        return _decode_frontend_message(frames)
    except ProtocolError:
        raise
    except (struct.error, IndexError, ValueError) as e:
        raise ProtocolError(f"malformed message: {e}") from e


def _decode_frontend_message(frames: list[bytes]) -> FrontendMessage:
    if len(frames) < 3 or frames[0] != EMPTY:
        raise ProtocolError("expected an empty delimiter, an RPC version and a message type")
    (msg_type,) = _U32.unpack(frames[2])
    if msg_type == MSG_HEARTBEAT:
        return HeartbeatReply(_U32.unpack(frames[3])[0] == HEARTBEAT_REQUEST_METADATA)
    if msg_type == MSG_CONTAINER_CONTENT:
        if len(frames) < 7:
            raise ProtocolError("ContainerContent needs id, request type, header length and header")
        msg_id = _U32.unpack(frames[3])[0]
        header = frames[6]
        type_code, n = struct.unpack_from("<QQ", header, 0)
        inputs = frames[7:]
        if len(inputs) != n:
            raise ProtocolError(f"header announces {n} inputs, message carries {len(inputs)}")
        return PredictRequest(msg_id, InputType(type_code), inputs)
    if msg_type == MSG_FRONTEND_LIST:
        return FrontendList([f.decode() for f in frames[3:]])
    raise ProtocolError(f"unexpected message type {msg_type} from frontend")
