"""Round-trip time of one small message: libzmq DEALER/ROUTER against plain TCP, on this machine.

Why the RPC speaks ZMTP in-process: `.venv/bin/python bench/rtt.py` (pyzmq comes with the dev extra).
"""

from __future__ import annotations

import socket
import statistics
import time
from multiprocessing import Process

import zmq

N = 3000


def zmq_echo(port: int) -> None:
    router = zmq.Context().socket(zmq.ROUTER)
    router.bind(f"tcp://127.0.0.1:{port}")
    while True:
        router.send_multipart(router.recv_multipart())


def tcp_echo(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(65536):
        conn.sendall(data)


def p50_us(round_trip: object) -> float:
    samples = []
    for _ in range(N):
        start = time.perf_counter_ns()
        round_trip()  # type: ignore[operator]
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def main() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        zport = probe.getsockname()[1]
    listener = socket.create_server(("127.0.0.1", 0))
    Process(target=zmq_echo, args=(zport,), daemon=True).start()
    Process(target=tcp_echo, args=(listener,), daemon=True).start()
    dealer = zmq.Context().socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{zport}")
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    message = b"x" * 20
    zmq_us = p50_us(lambda: (dealer.send_multipart([b"", message]), dealer.recv_multipart()))
    tcp_us = p50_us(lambda: (client.sendall(message), client.recv(100)))
    print(f"p50 round trip over {N} messages: libzmq {zmq_us:.1f} us, plain TCP {tcp_us:.1f} us")


if __name__ == "__main__":
    main()
