"""The event-loop HTTP/1.1 server, over real sockets on 127.0.0.1: framing, order, limits, close."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import orjson
import pytest

from clipper.frontends.http1 import MAX_PIPELINED, MAX_URL_BYTES, HttpServer, Respond

LIMIT = 64  # max_body_bytes of the servers under test
GUARD_S = 10  # only turns a hang into a failure; no test depends on it


class App:
    """Echoes `METHOD path body`; holds /hold* requests for the test to answer; raises on /raise."""

    def __init__(self, name: str = "a") -> None:
        self.name = name
        self.held: asyncio.Queue[tuple[str, Respond]] = asyncio.Queue()
        self.authorization: bytes | None = None  # of the last request

    def handle(
        self,
        method: str,
        path: str,
        body: bytes,
        respond: Respond,
        authorization: bytes | None = None,
        inference_header: bytes | None = None,
    ) -> None:
        self.authorization = authorization
        if path == "/raise":
            raise RuntimeError("boom")
        if path.startswith("/hold"):
            self.held.put_nowait((path, respond))
            return
        respond((200, [("x-server", self.name)], f"{method} {path} ".encode() + body))

    async def next_held(self) -> tuple[str, Respond]:
        async with asyncio.timeout(GUARD_S):
            return await self.held.get()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, str]:
        assert self.headers["content-type"] == "application/json"
        return orjson.loads(self.body)  # type: ignore[no-any-return]


class Client:
    """One raw TCP connection: write request bytes, read framed replies, detect the server's close."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def line(self) -> bytes:
        async with asyncio.timeout(GUARD_S):
            return await self.reader.readuntil(b"\r\n")

    async def reply(self, *, head: bool = False) -> Reply:
        """One response; `head` means the answer to HEAD, so no body follows its headers."""
        version, status, _ = (await self.line()).decode("latin-1").split(" ", 2)
        assert version == "HTTP/1.1"
        headers: dict[str, str] = {}
        while (line := await self.line()) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            assert name.lower() not in headers, f"duplicate header {name}"
            headers[name.lower()] = value.strip()
        length = 0 if head else int(headers["content-length"])
        async with asyncio.timeout(GUARD_S):
            body = await self.reader.readexactly(length)
        return Reply(int(status), headers, body)

    async def closed_by_server(self) -> bool:
        """True once the server has closed, provided it sent nothing more before closing."""
        async with asyncio.timeout(GUARD_S):
            return await self.reader.read() == b""


Connect = Callable[[], Awaitable[Client]]


def get(path: str, *headers: str, method: str = "GET", version: str = "1.1", body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(path: str, *chunks: bytes, end: bool = True) -> bytes:
    out = f"POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    out += b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks)
    return out + (b"0\r\n\r\n" if end else b"")


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
async def server(app: App) -> AsyncIterator[HttpServer]:
    s = HttpServer(app, "127.0.0.1", 0, max_body_bytes=LIMIT, keepalive_timeout_s=60)
    await s.start()
    yield s
    await s.close()


@pytest.fixture
async def connect(server: HttpServer) -> AsyncIterator[Connect]:
    clients: list[Client] = []

    async def open_client() -> Client:
        clients.append(Client(*await asyncio.open_connection("127.0.0.1", server.port)))
        return clients[-1]

    yield open_client
    for c in clients:
        c.writer.close()


async def test_keep_alive_answers_several_requests_on_one_connection(connect: Connect) -> None:
    """HTTP/1.1 stays open by default; each answer echoes the request with exact length and a date."""
    c = await connect()
    c.send(get("/a", method="POST", body=b"hello"))
    first = await c.reply()
    assert (first.status, first.body) == (200, b"POST /a hello")
    assert first.headers["content-length"] == str(len(first.body))
    assert first.headers["x-server"] == "a"
    assert "connection" not in first.headers
    assert email.utils.parsedate_to_datetime(first.headers["date"]).tzinfo is not None
    c.send(get("/b"))
    second = await c.reply()
    assert (second.status, second.body, second.headers["content-length"]) == (200, b"GET /b ", "7")


async def test_pipelined_answers_leave_in_request_order(app: App, connect: Connect) -> None:
    """Requests sent in one write and answered by the app in reverse are written back in request order."""
    c = await connect()
    c.send(b"".join(get(f"/hold/{i}") for i in range(3)))
    held = [await app.next_held() for _ in range(3)]
    assert [path for path, _ in held] == ["/hold/0", "/hold/1", "/hold/2"]
    for path, respond in reversed(held):
        respond((200, [], path.encode()))
    assert [(await c.reply()).body for _ in range(3)] == [b"/hold/0", b"/hold/1", b"/hold/2"]


async def test_reading_resumes_after_max_pipelined_requests_are_answered(app: App, connect: Connect) -> None:
    """With MAX_PIPELINED answers owed the server stops reading; answering them lets later requests in."""
    c = await connect()
    c.send(b"".join(get(f"/hold/{i}") for i in range(MAX_PIPELINED)))
    first = [await app.next_held() for _ in range(MAX_PIPELINED)]
    c.send(get("/hold/late") + get("/after"))  # arrives while the server is not reading
    for path, respond in reversed(first):
        respond((200, [], path.encode()))
    path, respond = await app.next_held()
    assert path == "/hold/late"
    respond((200, [], b"late"))
    bodies = [(await c.reply()).body for _ in range(MAX_PIPELINED + 2)]
    assert bodies == [p.encode() for p, _ in first] + [b"late", b"GET /after "]


async def test_http10_closes_unless_asked_to_keep_alive(connect: Connect) -> None:
    """HTTP/1.0 is answered then closed; with `Connection: keep-alive` it is told so and stays open."""
    plain = await connect()
    plain.send(get("/x", version="1.0"))
    assert (await plain.reply()).body == b"GET /x "
    assert await plain.closed_by_server()

    kept = await connect()
    for path in ("/1", "/2"):
        kept.send(get(path, "Connection: keep-alive", version="1.0"))
        reply = await kept.reply()
        assert (reply.body, reply.headers["connection"]) == (f"GET {path} ".encode(), "keep-alive")
    kept.send(get("/3", version="1.0"))
    assert (await kept.reply()).body == b"GET /3 "
    assert await kept.closed_by_server()


async def test_connection_close_on_http11_is_honoured(connect: Connect) -> None:
    """`Connection: close` gets its answer marked `connection: close`, then the server closes."""
    c = await connect()
    c.send(get("/bye", "Connection: close"))
    reply = await c.reply()
    assert (reply.status, reply.body, reply.headers["connection"]) == (200, b"GET /bye ", "close")
    assert await c.closed_by_server()


async def test_expect_100_continue_is_answered_before_the_body(connect: Connect) -> None:
    """The interim 100 arrives while the client still holds the body back; the final answer follows."""
    c = await connect()
    c.send(b"POST /e HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert await c.line() == b"HTTP/1.1 100 Continue\r\n"
    assert await c.line() == b"\r\n"
    c.send(b"data")
    reply = await c.reply()
    assert (reply.status, reply.body) == (200, b"POST /e data")


@pytest.mark.parametrize("expect", [(), ("Expect: 100-continue",)], ids=["plain", "expect-100"])
async def test_declared_body_over_the_limit_is_413_and_closes(
    connect: Connect, expect: tuple[str, ...]
) -> None:
    """A Content-Length over max_body_bytes gets a JSON 413 naming the limit (never a 100), then a close."""
    c = await connect()
    c.send(get("/big", f"Content-Length: {LIMIT + 1}", *expect, method="POST"))
    reply = await c.reply()
    assert reply.status == 413
    assert reply.json() == {"error": "Request too large", "cause": f"the request body exceeds {LIMIT} bytes"}
    assert reply.headers["connection"] == "close"
    assert await c.closed_by_server()


async def test_body_of_exactly_the_limit_is_accepted(connect: Connect) -> None:
    """max_body_bytes is inclusive, by Content-Length and by chunked framing alike."""
    c = await connect()
    c.send(get("/cl", method="POST", body=b"x" * LIMIT))
    assert (await c.reply()).body == b"POST /cl " + b"x" * LIMIT
    c.send(chunked("/ch", b"y" * (LIMIT - 1), b"z"))
    assert (await c.reply()).body == b"POST /ch " + b"y" * (LIMIT - 1) + b"z"


async def test_chunked_body_is_reassembled(connect: Connect) -> None:
    """Chunks, even written separately, reach the app as one body, and the connection stays usable."""
    c = await connect()
    whole = chunked("/c", b"hello", b" ", b"world")
    head_len = whole.index(b"\r\n\r\n") + 4
    c.send(whole[:head_len])
    await c.writer.drain()
    c.send(whole[head_len:])
    assert (await c.reply()).body == b"POST /c hello world"
    c.send(get("/next"))
    assert (await c.reply()).body == b"GET /next "


async def test_chunked_body_over_the_limit_is_413_and_closes(connect: Connect) -> None:
    """Chunks adding up to more than max_body_bytes get the JSON 413, then a close."""
    c = await connect()
    c.send(chunked("/big", b"a" * 40, b"b" * 40, end=False))  # nothing left unread when the server closes
    reply = await c.reply()
    assert reply.status == 413
    assert str(LIMIT) in reply.json()["cause"]
    assert await c.closed_by_server()


async def test_request_target_over_the_limit_is_414_and_closes(app: App, connect: Connect) -> None:
    """A path longer than MAX_URL_BYTES is refused with a JSON 414 before the app sees it."""
    c = await connect()
    c.send(get("/hold" + "a" * MAX_URL_BYTES))  # the app would hold it, never answer
    reply = await c.reply()
    assert reply.status == 414
    assert str(MAX_URL_BYTES) in reply.json()["cause"]
    assert await c.closed_by_server()
    assert app.held.empty()


async def test_malformed_request_is_400_after_earlier_answers_then_closes(connect: Connect) -> None:
    """A bad request line gets a JSON 400 and a close; a good request before it is still answered first."""
    c = await connect()
    c.send(get("/ok") + b"NOT A REQUEST\r\n\r\n")
    assert (await c.reply()).body == b"GET /ok "
    reply = await c.reply()
    assert reply.status == 400
    assert reply.json()["error"] == "Bad request"
    assert reply.json()["cause"].startswith("malformed HTTP/1.1 request")
    assert await c.closed_by_server()


async def test_head_has_length_but_no_body(connect: Connect) -> None:
    """HEAD gets the GET's content-length and no body bytes, so a pipelined answer after it parses."""
    c = await connect()
    c.send(get("/h", method="HEAD") + get("/g"))
    head = await c.reply(head=True)
    assert (head.status, head.headers["content-length"]) == (200, str(len(b"HEAD /h ")))
    assert (await c.reply()).body == b"GET /g "


async def test_app_error_is_500_and_the_connection_keeps_serving(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in handle becomes a logged JSON 500; the next request on the connection is served."""
    c = await connect()
    c.send(get("/raise") + get("/fine"))
    reply = await c.reply()
    assert reply.status == 500
    assert reply.json()["error"] == "Internal error"
    assert "connection" not in reply.headers
    assert (await c.reply()).body == b"GET /fine "
    assert "Unhandled error answering GET /raise" in caplog.text


async def test_query_string_is_stripped_from_the_path(connect: Connect) -> None:
    """The app sees the path without `?query`."""
    c = await connect()
    c.send(get("/p/q?x=1&next=/r?s"))
    assert (await c.reply()).body == b"GET /p/q "


async def test_close_drops_idle_connections_and_finishes_pending_answers(
    server: HttpServer, app: App, connect: Connect
) -> None:
    """close() stops accepting, drops an idle connection at once; a busy one gets its answer, then closes."""
    idle, busy = await connect(), await connect()
    idle.send(get("/warm"))
    assert (await idle.reply()).status == 200  # the server has surely accepted it
    busy.send(get("/hold/pending"))
    _, respond = await app.next_held()

    closing = asyncio.create_task(server.close())
    assert await idle.closed_by_server()  # while the busy answer is still owed
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", server.port)
    respond((200, [], b"done"))
    assert (await busy.reply()).body == b"done"
    assert await busy.closed_by_server()
    async with asyncio.timeout(GUARD_S):
        await closing


async def test_idle_keep_alive_connections_close_after_the_timeout(app: App) -> None:
    """A connection with nothing owed closes after keepalive_timeout_s; one waiting for its answer stays."""
    server = HttpServer(app, "127.0.0.1", 0, max_body_bytes=LIMIT, keepalive_timeout_s=0.3)
    await server.start()
    try:
        busy = Client(*await asyncio.open_connection("127.0.0.1", server.port))
        busy.send(get("/hold"))
        _, respond = await app.next_held()
        idle = Client(*await asyncio.open_connection("127.0.0.1", server.port))
        idle.send(get("/ok"))
        assert (await idle.reply()).status == 200
        assert await idle.closed_by_server()  # by now `busy` too is past the timeout, but owed an answer
        respond((200, [], b"late"))
        assert (await busy.reply()).body == b"late"
        assert await busy.closed_by_server()  # idle in its turn once answered
    finally:
        await server.close()


async def test_port_zero_is_resolved_and_the_port_can_be_shared(server: HttpServer, connect: Connect) -> None:
    """start() stores the kernel's port; a second server binds it too (SO_REUSEPORT) and takes over."""
    assert server.port > 0
    first = await connect()
    first.send(get("/who"))
    assert (await first.reply()).headers["x-server"] == "a"
    other = HttpServer(App("b"), "127.0.0.1", server.port, max_body_bytes=LIMIT, keepalive_timeout_s=60)
    await other.start()
    try:
        assert other.port == server.port
        await server.close()  # only `other` listens now
        c = Client(*await asyncio.open_connection("127.0.0.1", server.port))
        c.send(get("/who", "Connection: close"))
        reply = await c.reply()
        assert (reply.body, reply.headers["x-server"]) == (b"GET /who ", "b")
        c.writer.close()
    finally:
        await other.close()


async def test_connect_gets_a_single_400(connect: Connect) -> None:
    """CONNECT asks for a tunnel: refused with one JSON 400 and a close, without reaching the app."""
    c = await connect()
    c.send(b"CONNECT /u HTTP/1.1\r\n\r\n")
    reply = await c.reply()
    assert reply.status == 400
    assert reply.json()["cause"] == "protocol upgrades are not supported"
    assert await c.closed_by_server()
