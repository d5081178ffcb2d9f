#!/usr/bin/env python
"""A minimal stand-in for Clipper 0.4's Python model container, written from reference §4.5 for compat tests.

It packs and reads frames itself with `struct`, one frame per recv as Clipper's `rpc.py` does, and does NOT
use `clipper.rpc.codec`, so it proves that an unmodified Clipper 0.4 container registers and is served by our
frontend. Single-threaded: no heartbeats while predict runs; any error ends the process, as in Clipper.

    CLIPPER_MODEL_NAME=m CLIPPER_MODEL_VERSION=1 CLIPPER_PORT=7000 CLIPPER_INPUT_TYPE=doubles \
        python tests/rpc/clipper_container.py [--poll-timeout-ms 5000]

It answers str(sum of the input) for numeric types and str(length) for strings.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time

import numpy as np
import zmq

RPC_VERSION = 3
MESSAGE_NEW_CONTAINER, MESSAGE_CONTAINER_CONTENT, MESSAGE_HEARTBEAT = 0, 1, 2
HEARTBEAT_REQUEST_METADATA = 1
REQUEST_PREDICT = 0
INPUT_STRINGS = 4
DTYPES = {0: np.int8, 1: np.int32, 2: np.float32, 3: np.float64}
INPUT_TYPE_CODES = {
    **dict.fromkeys(("bytes", "byte", "b"), 0),
    **dict.fromkeys(("integers", "ints", "integer", "int", "i"), 1),
    **dict.fromkeys(("floats", "float", "f"), 2),
    **dict.fromkeys(("doubles", "double", "d"), 3),
    **dict.fromkeys(("strings", "string", "str", "strs", "s"), 4),
}


ACTIVITY_TIMEOUT_MS = 30_000  # Clipper's container reconnects after this long without a message


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _now_ms() -> float:
    return time.monotonic() * 1000


def predict_sum(inputs: object) -> list[str]:
    return [str(len(x)) if isinstance(x, bytes) else str(x.sum()) for x in inputs]  # type: ignore[attr-defined]


class ClipperContainer:
    """Clipper 0.4's container session loop: heartbeat, register on request, answer predictions."""

    def __init__(
        self,
        name: str,
        version: str,
        input_type: str,
        ip: str,
        port: int,
        predict,
        poll_timeout_ms: int,
        activity_timeout_ms: int,
    ) -> None:
        self.name, self.version = name, version
        self.input_type_code = INPUT_TYPE_CODES.get(input_type.strip().lower(), -1)
        self.address = f"tcp://{socket.gethostbyname(ip)}:{port}"  # resolved once, like Clipper
        self.predict = predict
        self.poll_timeout_ms = poll_timeout_ms
        self.activity_timeout_ms = activity_timeout_ms

    def run(self) -> None:
        context = zmq.Context()
        poller = zmq.Poller()
        while True:
            sock = context.socket(zmq.DEALER)
            poller.register(sock, zmq.POLLIN)
            sock.connect(self.address)
            self.send_heartbeat(sock)
            connected = False
            last_activity_ms = _now_ms()
            while True:
                ready = dict(poller.poll(self.poll_timeout_ms))
                if ready.get(sock) != zmq.POLLIN:
                    if not connected:
                        continue
                    if _now_ms() - last_activity_ms >= self.activity_timeout_ms:
                        print("Connection timed out, reconnecting...", flush=True)
                        poller.unregister(sock)
                        sock.close()
                        break
                    self.send_heartbeat(sock)
                    continue
                connected = True
                last_activity_ms = _now_ms()
                self.handle(sock)

    def handle(self, sock: zmq.Socket) -> None:
        sock.recv()  # empty delimiter
        (rpc_version,) = struct.unpack("<I", sock.recv())
        if rpc_version != RPC_VERSION:
            print(f"Received a message with RPC version {rpc_version}, expected {RPC_VERSION}", flush=True)
        (msg_type,) = struct.unpack("<I", sock.recv())
        if msg_type == MESSAGE_HEARTBEAT:
            (heartbeat_type,) = struct.unpack("<I", sock.recv())
            if heartbeat_type == HEARTBEAT_REQUEST_METADATA:
                self.send_metadata(sock)
        elif msg_type == MESSAGE_NEW_CONTAINER:
            print("Received erroneous new container message from Clipper!", flush=True)
        elif msg_type == MESSAGE_CONTAINER_CONTENT:
            msg_id = sock.recv()  # echoed verbatim
            (request_type,) = struct.unpack("<I", sock.recv())
            if request_type != REQUEST_PREDICT:
                raise RuntimeError("feedback requests are not supported")
            (header_bytes,) = struct.unpack("<Q", sock.recv())
            header = np.frombuffer(sock.recv(), dtype="<u8")
            assert header.size * 8 == header_bytes
            input_type, num_inputs = int(header[0]), int(header[1])
            raw = [sock.recv() for _ in range(num_inputs)]
            if input_type == INPUT_STRINGS:
                inputs = np.empty(num_inputs, dtype=object)
                inputs[:] = raw
            else:
                rows = [np.frombuffer(r, dtype=DTYPES[input_type]) for r in raw]
                if len({len(r) for r in rows}) <= 1:
                    inputs = np.array(rows)
                else:
                    inputs = np.empty(num_inputs, dtype=object)
                    inputs[:] = rows
            outputs = self.predict(inputs)
            if not isinstance(outputs, list) or len(outputs) != num_inputs or not isinstance(outputs[0], str):
                raise RuntimeError("predict must return a list of strings, one per input")
            self.send_response(sock, msg_id, outputs)

    def send_heartbeat(self, sock: zmq.Socket) -> None:
        sock.send(b"", zmq.SNDMORE)
        sock.send(_u32(MESSAGE_HEARTBEAT))

    def send_metadata(self, sock: zmq.Socket) -> None:
        sock.send(b"", zmq.SNDMORE)
        sock.send(_u32(MESSAGE_NEW_CONTAINER), zmq.SNDMORE)
        sock.send_string(self.name, zmq.SNDMORE)
        sock.send_string(str(self.version), zmq.SNDMORE)
        sock.send_string(str(self.input_type_code), zmq.SNDMORE)
        sock.send(_u32(RPC_VERSION))
        print(f"Sent container metadata for {self.name}:{self.version}", flush=True)

    def send_response(self, sock: zmq.Socket, msg_id: bytes, outputs: list[str]) -> None:
        encoded = [o.encode("utf-8") for o in outputs]
        header = struct.pack(f"<{len(encoded) + 1}Q", len(encoded), *(len(e) for e in encoded))
        sock.send(b"", zmq.SNDMORE)
        sock.send(_u32(MESSAGE_CONTAINER_CONTENT), zmq.SNDMORE)
        sock.send(msg_id, zmq.SNDMORE)
        sock.send(struct.pack("<Q", len(header)), zmq.SNDMORE)
        sock.send(header, zmq.SNDMORE)
        for i, e in enumerate(encoded):
            sock.send(e, zmq.SNDMORE if i < len(encoded) - 1 else 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--poll-timeout-ms", type=int, default=5000)
    args = parser.parse_args()
    try:
        name, version = os.environ["CLIPPER_MODEL_NAME"], os.environ["CLIPPER_MODEL_VERSION"]
    except KeyError as e:
        print(f"{e.args[0]} must be set", file=sys.stderr)
        return 1
    container = ClipperContainer(
        name,
        version,
        os.environ.get("CLIPPER_INPUT_TYPE", "doubles"),
        os.environ.get("CLIPPER_IP", "127.0.0.1"),
        int(os.environ.get("CLIPPER_PORT", "7000")),
        predict_sum,
        args.poll_timeout_ms,
        ACTIVITY_TIMEOUT_MS,
    )
    print(f"Serving {name}:{version} to {container.address}", flush=True)
    container.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
