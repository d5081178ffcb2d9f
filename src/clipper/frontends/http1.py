"""HTTP/1.1 on the event loop's own thread, for the query edge; httptools parses, this module frames.

Why not granian: every request that granian's Rust threads hand to the Python loop and back costs two
thread wake-ups, which dominate on small machines. Reading a body and awaiting one future measured
~50-65k req/s on granian against ~105-115k here (2 cores, 64 connections; `bench/run.py`, baselines
`granian-read-await` and `http1-read-await`). What a query edge needs, and no more: keep-alive (HTTP/1.0
and 1.1), pipelined requests answered in order, `Expect: 100-continue`, a body size limit (413), a 400 on
bad framing, back-pressure on slow readers, an idle timeout for keep-alive connections, and a close that lets
answers in hand go out first.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import time
from collections.abc import Callable
from typing import Protocol

import httptools

from clipper.frontends.errors import error_body

logger = logging.getLogger(__name__)

Headers = list[tuple[str, str]]
Response = tuple[int, Headers, bytes]
Respond = Callable[[Response], None]

MAX_PIPELINED = 16  # unanswered requests per connection before it stops reading
MAX_URL_BYTES = 8192  # request targets longer than this get 414
_REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    413: "Content Too Large", 414: "URI Too Long", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable",
}  # fmt: skip
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"  # HTTP/1.0 clients close unless told otherwise
_JSON = [("content-type", "application/json")]


class HttpApp(Protocol):
    """What the server calls for each request."""

    def handle(self, method: str, path: str, body: bytes, respond: Respond) -> None:
        """Answer one request by calling `respond` exactly once, now or later."""


class HttpServer:
    """Listens on host:port (SO_REUSEPORT, so several frontends can share the port) and serves `app`."""

    def __init__(
        self, app: HttpApp, host: str, port: int, *, max_body_bytes: int, keepalive_timeout_s: float
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.keepalive_timeout_s = keepalive_timeout_s
        self.date = b""
        self._connections: set[_Connection] = set()
        self._listener: asyncio.Server | None = None
        self._clock: asyncio.TimerHandle | None = None
        self._heads: dict[tuple[int, tuple[tuple[str, str], ...]], bytes] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tick()
        self._listener = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_port=True, backlog=2048
        )
        self.port = self._listener.sockets[0].getsockname()[1]  # the one the kernel chose, for port 0

    async def close(self) -> None:
        """Stop accepting; idle connections close now, busy ones once their answers are written."""
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._connections):
            conn.close_when_idle()
        if self._clock is not None:
            self._clock.cancel()
        if self._listener is not None:
            await self._listener.wait_closed()

    def head(self, status: int, headers: Headers) -> bytes:
        """Status line and headers (without date, length, connection), encoded once per distinct set."""
        key = (status, tuple(headers))
        out = self._heads.get(key)
        if out is None:
            lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"]
            lines += [f"{name}: {value}\r\n" for name, value in headers]
            out = "".join(lines).encode("latin-1")
            if len(self._heads) < 256:  # the app uses a handful; never grow without bound
                self._heads[key] = out
        return out

    def _tick(self) -> None:
        """Refresh the Date header (not formatted per response) and close keep-alive connections left idle.

        One sweep a second (more often for short timeouts) costs the query path nothing per request.
        """
        self.date = b"date: %b\r\n" % email.utils.formatdate(usegmt=True).encode()
        idle_before = time.monotonic() - self.keepalive_timeout_s
        for conn in [c for c in self._connections if c.idle_since is not None and c.idle_since < idle_before]:
            conn.close_when_idle()
        period = min(1.0, self.keepalive_timeout_s / 2)
        self._clock = asyncio.get_running_loop().call_later(period, self._tick)

    def track(self, conn: _Connection, open_: bool) -> None:
        if open_:
            self._connections.add(conn)
        else:
            self._connections.discard(conn)


class _Exchange:
    """One request on a connection, waiting for its answer so answers leave in request order."""

    __slots__ = ("conn", "connection_header", "head_only", "keep_alive", "out")

    def __init__(self, conn: _Connection, keep_alive: bool, http10: bool, head_only: bool) -> None:
        self.conn = conn
        self.keep_alive = keep_alive
        self.connection_header = (_KEEP_ALIVE if http10 else b"") if keep_alive else b"connection: close\r\n"
        self.head_only = head_only
        self.out: bytes | None = None

    def respond(self, response: Response) -> None:
        if self.out is None:
            status, headers, body = response
            server = self.conn.server
            head = server.head(status, headers) + server.date
            framing = b"content-length: %d\r\n%b\r\n" % (len(body), self.connection_header)
            self.out = head + framing if self.head_only else head + framing + body
            self.conn.flush()


class _Connection(asyncio.Protocol):
    """One client connection: parser callbacks build requests, `flush` writes answers in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: collections.deque[_Exchange] = collections.deque()
        self._url = b""
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._expect_continue = False
        self._refusal: tuple[int, str, str] | None = None  # answered once the parser returns
        self._write_paused = False
        self._reading = True
        self._closing = False
        self.idle_since: float | None = time.monotonic()  # None while a request is read or answered

    # --- transport events ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's TCP transport
        self.server.track(self, True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._queue.clear()
        self.server.track(self, False)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Bad request", "protocol upgrades are not supported")
        except httptools.HttpParserError as e:
            self._fail(400, "Bad request", f"malformed HTTP/1.1 request: {e}")
        if self._refusal is not None:
            self._fail(*self._refusal)

    # --- parser callbacks ---

    def on_message_begin(self) -> None:
        self.idle_since = None
        self._url = b""
        self._body = []
        self._body_bytes = 0
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL_BYTES:
            self._refusal = (414, "URI too long", f"the request target exceeds {MAX_URL_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 6 and name.lower() == b"expect":
            self._expect_continue = value.lower() == b"100-continue"
        elif len(name) == 14 and name.lower() == b"content-length":
            if value.isdigit() and int(value) > self.server.max_body_bytes:
                self._refuse_body()

    def on_headers_complete(self) -> None:
        # An interim answer may only go out while no earlier answer is owed on this connection; a
        # client that gets none sends the body after its own short wait.
        if self._expect_continue and self._refusal is None and not self._queue and self._transport:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.server.max_body_bytes:
            self._refuse_body()
        elif self._refusal is None:
            self._body.append(body)

    def _refuse_body(self) -> None:
        limit = self.server.max_body_bytes
        self._refusal = (413, "Request too large", f"the request body exceeds {limit} bytes")
        self._body = []

    def on_message_complete(self) -> None:
        parser = self._parser
        # httptools completes an Upgrade or CONNECT request before it raises HttpParserUpgrade; the
        # raise answers it with a 400, so the app never sees it.
        if self._refusal is not None or self._closing or parser.should_upgrade():
            return
        method = parser.get_method().decode("latin-1")
        http10 = parser.get_http_version() == "1.0"
        exchange = _Exchange(self, parser.should_keep_alive(), http10, method == "HEAD")
        self._queue.append(exchange)
        if len(self._queue) >= MAX_PIPELINED:
            self._update_reading()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        path = self._url.partition(b"?")[0].decode("latin-1")
        try:
            self.server.app.handle(method, path, body, exchange.respond)
        except Exception:
            logger.exception("Unhandled error answering %s %s", method, path)
            exchange.respond((500, _JSON, error_body("Internal error", "see logs")))

    # --- answers ---

    def flush(self) -> None:
        """Write every answer that is ready and owed next; close after one that ends the connection."""
        queue, transport = self._queue, self._transport
        if transport is None or transport.is_closing():  # the client left; its answers have nowhere to go
            return
        while queue and queue[0].out is not None:
            exchange = queue.popleft()
            assert exchange.out is not None
            transport.write(exchange.out)
            if not exchange.keep_alive:
                self._closing = True
                queue.clear()
        if self._closing and not queue:
            transport.close()
            return
        if not queue:
            self.idle_since = time.monotonic()
        if not self._reading:
            self._update_reading()

    def close_when_idle(self) -> None:
        self._closing = True
        if not self._queue and self._transport is not None:
            self._transport.close()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        want = len(self._queue) < MAX_PIPELINED and not self._write_paused and not self._closing
        if want != self._reading:
            self._reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _fail(self, status: int, error: str, cause: str) -> None:
        """Answer a request that cannot be framed or read, after the answers already owed, then close."""
        if self._closing or self._transport is None:
            return
        self._refusal = None
        self._closing = True  # read nothing more; close once this answer is out
        exchange = _Exchange(self, False, False, False)
        self._queue.append(exchange)
        self._update_reading()
        exchange.respond((status, _JSON, error_body(error, cause)))
