"""The HTTP/1.1 server's defences, over real sockets: head size (431), read timeouts (408), a connection
cap (503), absolute-form targets, ignored Upgrade offers, the Authorization header, and freeing memory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import subprocess
import sys
import tracemalloc
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from clipper.frontends.http1 import FD_RESERVE_MIN, HttpServer, connection_cap
from tests.frontends.test_http1 import GUARD_S, App, Client, get

HEAD_LIMIT = 4096


@pytest.fixture
def app() -> App:
    return App()


@contextlib.asynccontextmanager
async def serving(app: App, **limits: Any) -> AsyncIterator[HttpServer]:
    """A server on a free port with `limits` over generous defaults."""
    options: dict[str, Any] = {"max_body_bytes": 1 << 20, "keepalive_timeout_s": 60, **limits}
    server = HttpServer(app, "127.0.0.1", 0, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def client(server: HttpServer) -> Client:
    return Client(*await asyncio.open_connection("127.0.0.1", server.port))


async def until(condition: Callable[[], bool]) -> None:
    """Poll `condition` on the loop (the server runs on it too), failing after GUARD_S."""
    async with asyncio.timeout(GUARD_S):
        while not condition():  # noqa: ASYNC110  (server state, with no event to await)
            await asyncio.sleep(0.01)


# --- head size ---


@pytest.mark.parametrize("pieces", [1, 64], ids=["one-write", "trickled"])
async def test_head_over_max_header_bytes_is_431_and_closes(app: App, pieces: int) -> None:
    """A head one byte over the bound gets a JSON 431 naming it, then a close; the app never sees it."""
    async with serving(app, max_header_bytes=HEAD_LIMIT) as server:
        c = await client(server)
        request = get("/big", "X-Pad: " + "a" * HEAD_LIMIT)
        step = len(request) // pieces + 1
        for i in range(0, len(request), step):
            c.send(request[i : i + step])
            await c.writer.drain()
        reply = await c.reply()
        assert reply.status == 431
        assert str(HEAD_LIMIT) in reply.json()["cause"]
        assert await c.closed_by_server()
        assert app.authorization is None and app.held.empty()


async def test_a_head_of_exactly_the_bound_is_served_and_its_body_is_not_counted(app: App) -> None:
    """The bound counts the head only: one that fills it exactly, with a body 50x its size in the same
    write, is served, and so is a pipelined request after it."""
    async with serving(app, max_header_bytes=HEAD_LIMIT) as server:
        c = await client(server)
        body = b"b" * (50 * HEAD_LIMIT)
        bare = get("/x", "X-Pad: ", method="POST", body=body)
        pad = HEAD_LIMIT - (len(bare) - len(body))
        c.send(get("/x", "X-Pad: " + "a" * pad, method="POST", body=body) + get("/next"))
        reply = await c.reply()
        assert (reply.status, reply.body) == (200, b"POST /x " + body)
        assert (await c.reply()).body == b"GET /next "
        c.writer.close()


async def test_default_head_bound_is_64_kib(app: App) -> None:
    """With no bound given, a 64 KiB header is refused and a 60 KiB one served."""
    async with serving(app) as server:
        ok, big = await client(server), await client(server)
        ok.send(get("/ok", "X-Pad: " + "a" * 60 * 1024))
        big.send(get("/big", "X-Pad: " + "a" * 64 * 1024))
        assert (await ok.reply()).status == 200
        assert (await big.reply()).status == 431
        ok.writer.close()


# --- read timeouts ---


async def test_head_not_complete_within_the_header_timeout_is_408_and_closes(app: App) -> None:
    """A slowloris head is answered 408 and closed, a new connection that sends nothing just closed; a
    connection waiting for its answer is left alone."""
    async with serving(app, header_timeout_s=0.3) as server:
        busy = await client(server)
        busy.send(get("/hold"))
        _, respond = await app.next_held()
        slow, silent = await client(server), await client(server)
        slow.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        reply = await slow.reply()
        assert reply.status == 408
        assert "head" in reply.json()["cause"]
        assert await slow.closed_by_server()
        assert await silent.closed_by_server()
        respond((200, [], b"late"))  # by now past the timeout too, but it owes nothing to read
        assert (await busy.reply()).body == b"late"
        busy.writer.close()


async def test_stalled_body_is_408_and_closes(app: App) -> None:
    """A body that stops arriving for body_timeout_s is answered 408 and the connection closed."""
    async with serving(app, body_timeout_s=0.3) as server:
        c = await client(server)
        c.send(b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly this")
        reply = await c.reply()
        assert reply.status == 408
        assert "body" in reply.json()["cause"]
        assert await c.closed_by_server()


async def test_body_trickling_below_the_minimum_rate_is_408(app: App) -> None:
    """A body that keeps making progress, but a byte at a time, is cut off once past body_timeout_s."""
    async with serving(app, body_timeout_s=0.3) as server:
        c = await client(server)
        c.send(b"POST /x HTTP/1.1\r\nContent-Length: 100000\r\n\r\n")

        async def trickle() -> None:
            while True:
                c.send(b"x")
                await asyncio.sleep(0.02)  # pacing the attack, not synchronisation

        task = asyncio.create_task(trickle())
        try:
            reply = await c.reply()
        finally:
            task.cancel()
        assert reply.status == 408


# --- connection cap ---


async def test_connections_past_max_connections_get_503_and_close(app: App) -> None:
    """Past the cap a new connection is told 503 and closed; once one leaves, a new one is served."""
    async with serving(app, max_connections=2) as server:
        first, second = await client(server), await client(server)
        for c in (first, second):
            c.send(get("/ok"))
            assert (await c.reply()).status == 200
        third = await client(server)
        reply = await third.reply()
        assert (reply.status, reply.headers["connection"]) == (503, "close")
        assert await third.closed_by_server()
        first.writer.close()
        await until(lambda: len(server._connections) < 2)
        fourth = await client(server)
        fourth.send(get("/ok"))
        assert (await fourth.reply()).status == 200
        second.writer.close()
        fourth.writer.close()


def test_connection_cap_leaves_file_descriptors_for_the_rest() -> None:
    """The cap keeps `reserved_fds` or a quarter of the soft limit free, whichever is more, at most half."""
    assert connection_cap(10_000, 1024) == 1024 - FD_RESERVE_MIN
    assert connection_cap(10_000, 1024, reserved_fds=1024 + FD_RESERVE_MIN) == 512  # the RPC cap's reserve
    assert connection_cap(10_000, 20_000) == 10_000
    assert connection_cap(10_000, 12_000) == 9_000
    assert connection_cap(10_000, 12_000, reserved_fds=5_000) == 7_000
    assert connection_cap(10_000, resource.RLIM_INFINITY) == 10_000
    assert connection_cap(10_000, 100) == 50


async def test_start_lowers_max_connections_to_fit_the_fd_limit_and_says_so(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no open-file limit to fit")
    async with serving(app, max_connections=10**9) as server:
        assert server.max_connections == connection_cap(10**9, soft)
    assert f"max_connections 1000000000 lowered to {server.max_connections}" in caplog.text


# --- request targets, upgrades, headers ---


@pytest.mark.parametrize(
    ("target", "path"),
    [("http://example.com/a/b?x=1", "/a/b"), ("HTTP://h:8080/p", "/p"), ("http://example.com", "/")],
)
async def test_absolute_form_target_is_routed_by_its_path(app: App, target: str, path: str) -> None:
    """RFC 9112 §3.2.2: a server must accept the absolute form; the host part is not ours to check."""
    async with serving(app) as server:
        c = await client(server)
        c.send(get(target, method="POST", body=b"in"))
        reply = await c.reply()
        assert (reply.status, reply.body) == (200, f"POST {path} in".encode())
        c.writer.close()


@pytest.mark.parametrize("body", [b"", b"abc"], ids=["no-body", "body"])
async def test_upgrade_offer_is_ignored_and_the_request_served_as_http11(app: App, body: bytes) -> None:
    """`curl --http2` offers h2c: the request (and its body) is answered as HTTP/1.1, and the connection
    goes on serving the requests behind it."""
    async with serving(app) as server:
        c = await client(server)
        upgrade = ("Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__")
        c.send(get("/u", *upgrade, "Authorization: Bearer t", method="POST", body=body) + get("/after"))
        reply = await c.reply()
        assert (reply.status, reply.body) == (200, b"POST /u " + body)
        assert "upgrade" not in reply.headers
        assert (await c.reply()).body == b"GET /after "
        c.send(get("/again", "Connection: Upgrade", "Upgrade: websocket"))
        assert (await c.reply()).body == b"GET /again "
        c.writer.close()


async def test_authorization_header_reaches_the_app(app: App) -> None:
    """The raw Authorization value is passed per request; a request without one passes None."""
    async with serving(app) as server:
        c = await client(server)
        c.send(get("/a", "authorization: Bearer s3cret"))
        await c.reply()
        assert app.authorization == b"Bearer s3cret"
        c.send(get("/b"))
        await c.reply()
        assert app.authorization is None
        c.writer.close()


# --- memory ---


async def test_aborted_uploads_are_freed_without_the_cyclic_collector(app: App) -> None:
    """Each half-sent large body is freed by reference counting once its client leaves: with the cyclic
    GC off, no connection object survives and traced memory returns to its baseline."""
    uploads, sent = 5, 4 << 20
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        async with serving(app, max_body_bytes=64 << 20) as server:
            baseline = tracemalloc.get_traced_memory()[0]
            gone: list[weakref.ref[object]] = []
            for _ in range(uploads):
                c = await client(server)
                c.send(b"POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (32 << 20) + b"u" * sent)
                await c.writer.drain()
                await until(lambda: any(conn._body_bytes >= sent for conn in server._connections))
                gone.append(weakref.ref(next(iter(server._connections))))
                c.writer.close()
                await until(lambda: not server._connections)
            assert [ref() for ref in gone] == [None] * uploads
            assert tracemalloc.get_traced_memory()[0] - baseline < sent // 4  # one upload held is 4 MiB
    finally:
        tracemalloc.stop()
        gc.enable()


def test_the_frontend_raises_its_open_file_limit_to_the_hard_limit() -> None:
    """Run in a child whose soft limit is 1,024, as many systems default it."""
    code = (
        "import resource; from clipper.frontends.http1 import raise_fd_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))\n"
        "assert raise_fd_limit() == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
