"""A container whose seed address is a proxy (a Kubernetes Service, a load balancer) settles on the frontends
it learns and stays: it used to drop them for the seed again and again, registering anew each time."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import free_port, wait_until
from tests.frontends.conftest import QueryCluster


class TcpProxy:
    """Forwards every connection on its own port to one target, as a Service's virtual IP does."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._server.close()


@pytest.fixture
def proxy(cluster: QueryCluster) -> Iterator[TcpProxy]:
    p = TcpProxy(cluster.rpc_port)
    yield p
    p.close()


def test_a_container_seeded_through_a_proxy_registers_once(cluster: QueryCluster, proxy: TcpProxy) -> None:
    cluster.model("m")
    cluster.app("a", model="m")
    cluster.container("m", "sum_inputs", CLIPPER_PORT=str(proxy.port))
    wait_until(lambda: cluster.post("a", {"input": [1.0]}).json()["default"] is False, what="a prediction")
    for i in range(100):
        assert cluster.post("a", {"input": [float(i), 1.0]}).json()["output"] == float(i) + 1.0
    counter = redis.Redis.from_url(cluster.redis_url, db=6).get("REPLICA_COUNTER:m:1")
    assert counter is not None and int(counter) <= 2  # the seed's link and the direct one, at most
