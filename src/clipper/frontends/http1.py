"""HTTP/1.1 on the event loop's own thread, for the query edge; httptools parses, this module frames.

Why not granian: every request that granian's Rust threads hand to the Python loop and back costs two
thread wake-ups, which dominate on small machines. Reading a body and awaiting one future measured
~50-65k req/s on granian against ~105-115k here (2 cores, 64 connections; `bench/run.py`, baselines
`granian-read-await` and `http1-read-await`). What a query edge needs, and no more: keep-alive (HTTP/1.0
and 1.1), pipelined requests answered in order, `Expect: 100-continue`, a body size limit (413), a head size
limit (431), a 400 on bad framing, back-pressure on slow readers, timeouts for reading a head or a body (408)
and for idle keep-alive connections, a cap on open connections (503), and a close that lets answers in hand
go out first. Absolute-form targets are routed by their path; an `Upgrade` offer (h2c, websocket) is ignored
and the request served as HTTP/1.1; only CONNECT is refused.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import resource
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
MIN_BODY_BYTES_PER_S = 16 * 1024  # past body_timeout_s, a body arriving slower than this gets 408
FD_RESERVE_MIN = 256  # file descriptors kept for everything but client connections: at least this many...
FD_RESERVE_SHARE = 4  # ...or a quarter of the soft limit, whichever is more, but never over half of it
_REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable",
}  # fmt: skip
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"  # HTTP/1.0 clients close unless told otherwise
_JSON = [("content-type", "application/json")]
_BUSY_BODY = error_body("Overloaded", "too many open connections; retry later")
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(_BUSY_BODY), _BUSY_BODY)
)
# What a connection is reading, for its timeouts: between requests (or waiting for answers), a head, a body.
_IDLE, _HEAD, _BODY = 0, 1, 2
_CHUNKED = b"chunked"  # `_framing` of a chunked body (compared by identity)
_SLASH = ord("/")


class HttpApp(Protocol):
    """What the server calls for each request."""

    def handle(
        self,
        method: str,
        path: str,
        body: bytes,
        respond: Respond,
        authorization: bytes | None,
        inference_header: bytes | None,
    ) -> None:
        """Answer one request by calling `respond` exactly once, now or later.

        `authorization` and `inference_header` are the raw values of the request's Authorization and
        Inference-Header-Content-Length (the Open Inference Protocol's binary data) headers, if present.
        """


def connection_cap(requested: int, fd_soft_limit: int, reserved_fds: int = FD_RESERVE_MIN) -> int:
    """`requested`, lowered so client connections leave `reserved_fds` (or a quarter) for everything else.

    The reserve never takes more than half the limit: a 1,024-descriptor limit still serves 512 clients.
    """
    if fd_soft_limit == resource.RLIM_INFINITY:
        return requested
    reserve = min(max(reserved_fds, fd_soft_limit // FD_RESERVE_SHARE), fd_soft_limit // 2)
    return max(1, min(requested, fd_soft_limit - reserve))


def raise_fd_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit (as servers do); the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            logger.warning("Could not raise the open-file limit from %d to %d: %s", soft, hard, e)
            return soft
        logger.info("Raised the open-file limit from %d to %d", soft, hard)
    return hard


class HttpServer:
    """Listens on host:port (SO_REUSEPORT, so several frontends can share the port) and serves `app`."""

    def __init__(
        self,
        app: HttpApp,
        host: str,
        port: int,
        *,
        max_body_bytes: int,
        keepalive_timeout_s: float,
        max_header_bytes: int = 64 * 1024,
        header_timeout_s: float = 20.0,
        body_timeout_s: float = 60.0,
        max_connections: int = 10_000,
        reserved_fds: int = FD_RESERVE_MIN,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.keepalive_timeout_s = keepalive_timeout_s
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_connections = max_connections
        self.reserved_fds = reserved_fds
        self.date = b""
        self.now = time.monotonic()  # refreshed by `_tick`: the clock of the timeouts, read per request
        self._connections: set[_Connection] = set()
        self._listener: asyncio.Server | None = None
        self._clock: asyncio.TimerHandle | None = None
        self._heads: dict[tuple[int, tuple[tuple[str, str], ...]], bytes] = {}

    async def start(self, *, listening: bool = True) -> None:
        """Clamp the connection cap to the fd limit (logged), bind, and listen unless told to wait.

        A port bound but not listening is known (for port 0) and reserved, yet no connection is routed to
        it, not even by SO_REUSEPORT from a shared port; `listen()` opens it.
        """
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = connection_cap(self.max_connections, soft, self.reserved_fds)
        if cap != self.max_connections:
            logger.warning(
                "max_connections %d lowered to %d: the open-file soft limit is %d",
                self.max_connections,
                cap,
                soft,
            )
            self.max_connections = cap
        logger.info("HTTP accepts at most %d connections (open-file soft limit %d)", cap, soft)
        loop = asyncio.get_running_loop()
        self._tick()
        self._listener = await loop.create_server(
            lambda: _Connection(self),
            self.host,
            self.port,
            reuse_port=True,
            backlog=2048,
            start_serving=listening,
        )
        self.port = self._listener.sockets[0].getsockname()[1]  # the one the kernel chose, for port 0

    async def listen(self) -> None:
        """Start taking connections on the port `start(listening=False)` bound."""
        assert self._listener is not None, "start() first"
        await self._listener.start_serving()

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
        """Refresh the Date header and the clock, and enforce the idle, head and body timeouts.

        One sweep a second (more often for short timeouts) costs the query path nothing per request.
        """
        self.now = now = time.monotonic()
        self.date = b"date: %b\r\n" % email.utils.formatdate(usegmt=True).encode()
        for conn in list(self._connections):
            conn.expire(now)
        period = min(1.0, self.keepalive_timeout_s / 2, self.header_timeout_s / 2, self.body_timeout_s / 2)
        self._clock = asyncio.get_running_loop().call_later(period, self._tick)

    def admit(self, conn: _Connection) -> bool:
        """Track a new connection, unless max_connections are already open."""
        if len(self._connections) >= self.max_connections:
            return False
        self._connections.add(conn)
        return True

    def forget(self, conn: _Connection) -> None:
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
        self._head_bytes = 0  # of the head being read; 0 again once its headers are complete
        self._expect_continue = False
        self._authorization: bytes | None = None
        self._inference_header: bytes | None = None
        self._framing: bytes | None = None  # the Content-Length value or _CHUNKED, to reframe an Upgrade
        self._refusal: tuple[int, str, str] | None = None  # answered once the parser returns
        self._write_paused = False
        self._reading = True
        self._closing = False
        self._phase = _HEAD  # a new connection owes its first head within header_timeout_s
        self._phase_since = server.now  # when the request being read began, or reading last resumed
        self._seen_body_bytes = 0  # `_body_bytes` at the last sweep, and when it last changed there
        self._seen_at = server.now
        self.idle_since: float | None = None  # set while nothing is read or owed

    # --- transport events ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.server.admit(self):
            transport.write(_BUSY)  # type: ignore[attr-defined]  # uvloop's TCP transport
            transport.close()
            self._closing = True
            return
        self._transport = transport  # type: ignore[assignment]  # uvloop's TCP transport

    def connection_lost(self, exc: Exception | None) -> None:
        # The parser holds this connection's bound callbacks, so connection and parser form a cycle that
        # only the cyclic GC would free, with any half-read body: an idle frontend allocates too little to
        # run it, and 10 aborted 60 MiB uploads left one at 689 MiB RSS instead of 131. Dropping the parser
        # and the buffers lets reference counting free them at once (51 -> 53 MiB after the same uploads).
        self._transport = None
        self._queue.clear()
        self._body = []
        del self._parser
        self.server.forget(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if self._phase != _BODY:  # a head, or the start of one, is being read: bound its size
            self._head_bytes += len(data)
            if self._head_bytes > self.server.max_header_bytes:
                self._head_bytes -= len(data)
                self._feed_up_to_the_head_limit(data)
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._reframe_upgrade(data[e.args[0] :])
        except httptools.HttpParserError as e:
            self._fail(400, "Bad request", f"malformed HTTP/1.1 request: {e}")
        if self._refusal is not None:
            self._fail(*self._refusal)

    def _feed_up_to_the_head_limit(self, data: bytes) -> None:
        """Feed `data` only as far as the head may go; 431 if its headers are not complete by then.

        httptools joins a header's pieces by repeated concatenation, quadratic in its length, so an
        oversized head must never reach it. (Heads pipelined behind a finished one in the same read are
        counted from that read's end: the bound may be passed by at most one read.)
        """
        if self._closing:
            return
        room = self.server.max_header_bytes - self._head_bytes
        self.data_received(data[:room])  # fills the bound exactly
        if self._closing:
            return
        if self._head_bytes:  # not reset by on_headers_complete: the head is longer than the limit
            limit = self.server.max_header_bytes
            self._fail(431, "Request header fields too large", f"the request head exceeds {limit} bytes")
            return
        self.data_received(data[room:])

    def _reframe_upgrade(self, rest: bytes) -> None:
        """Serve an `Upgrade` request as plain HTTP/1.1 (as if the header were absent); refuse CONNECT.

        llhttp completes an upgrade request at the end of its head and stops, leaving any body unread, so
        a fresh parser is given the request's line and framing headers again, then the bytes that follow.
        """
        old = self._parser
        method = old.get_method()
        if method == b"CONNECT":
            self._fail(400, "Bad request", "protocol upgrades are not supported")
            return
        lines = [b"%b %b HTTP/%b" % (method, self._url, old.get_http_version().encode())]
        if not old.should_keep_alive():
            lines.append(b"connection: close")
        if self._framing is _CHUNKED:
            lines.append(b"transfer-encoding: chunked")
        elif self._framing is not None:
            lines.append(b"content-length: " + self._framing)
        if self._expect_continue:
            lines.append(b"expect: 100-continue")
        if self._authorization is not None:
            lines.append(b"authorization: " + self._authorization)
        if self._inference_header is not None:
            lines.append(b"inference-header-content-length: " + self._inference_header)
        self._parser = httptools.HttpRequestParser(self)
        self.data_received(b"\r\n".join(lines) + b"\r\n\r\n" + rest)

    # --- parser callbacks ---

    def on_message_begin(self) -> None:
        self.idle_since = None
        self._phase = _HEAD
        self._phase_since = self.server.now
        self._url = b""
        self._body_bytes = 0  # `_body` is empty: emptied when the last message completed, or refused
        self._expect_continue = False
        self._authorization = None
        self._inference_header = None
        self._framing = None

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL_BYTES:
            self._refusal = (414, "URI too long", f"the request target exceeds {MAX_URL_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name)
        if size == 14 and name.lower() == b"content-length":
            self._framing = value
            if value.isdigit() and int(value) > self.server.max_body_bytes:
                self._refuse_body()
        elif size == 13 and name.lower() == b"authorization":
            self._authorization = value
        elif size == 31 and name.lower() == b"inference-header-content-length":
            self._inference_header = value
        elif size == 6 and name.lower() == b"expect":
            self._expect_continue = value.lower() == b"100-continue"
        elif size == 17 and name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            self._framing = _CHUNKED

    def on_headers_complete(self) -> None:
        self._head_bytes = 0
        self._phase = _BODY
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
        self._phase = _IDLE
        parser = self._parser
        # httptools completes an Upgrade or CONNECT request before it raises HttpParserUpgrade; the
        # handler of that raise serves it without the upgrade, or refuses CONNECT.
        if self._refusal is not None or self._closing or parser.should_upgrade():
            return
        method = parser.get_method().decode("latin-1")
        http10 = parser.get_http_version() == "1.0"
        exchange = _Exchange(self, parser.should_keep_alive(), http10, method == "HEAD")
        self._queue.append(exchange)
        if len(self._queue) >= MAX_PIPELINED:
            self._update_reading()
        chunks = self._body
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()  # the app holds the body from here on, for as long as it needs it
        url = self._url
        if url[0] != _SLASH:  # absolute form (RFC 9112 §3.2.2): route by the path after the host
            scheme, sep, rest = url.partition(b"://")
            url = b"/" + rest.partition(b"/")[2] if sep and b"/" not in scheme else url
        path = url.partition(b"?")[0].decode("latin-1")
        try:
            self.server.app.handle(
                method, path, body, exchange.respond, self._authorization, self._inference_header
            )
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
        if not queue and self._phase == _IDLE:
            self.idle_since = time.monotonic()
        if not self._reading:
            self._update_reading()

    def close_when_idle(self) -> None:
        self._closing = True
        if not self._queue and self._transport is not None:
            self._transport.close()

    def expire(self, now: float) -> None:
        """Close this connection if idle too long; answer 408 and close if a head or body is too slow.

        Time while this side stops reading (pipelining or write back-pressure) does not count.
        """
        server = self.server
        if self.idle_since is not None:
            if now - self.idle_since > server.keepalive_timeout_s:
                self.close_when_idle()
        elif not self._reading or self._closing:
            return
        elif self._phase == _HEAD and now - self._phase_since > server.header_timeout_s:
            if not self._head_bytes:  # a new connection that never sent a byte: no request to answer
                self.close_when_idle()
            else:
                self._fail(
                    408, "Request timeout", f"the request head took over {server.header_timeout_s:g} s"
                )
        elif self._phase == _BODY:
            if self._body_bytes != self._seen_body_bytes:
                self._seen_body_bytes, self._seen_at = self._body_bytes, now
            elapsed = now - self._phase_since
            stalled = now - max(self._seen_at, self._phase_since) > server.body_timeout_s
            if stalled or (
                elapsed > server.body_timeout_s and self._body_bytes < MIN_BODY_BYTES_PER_S * elapsed
            ):
                self._fail(
                    408,
                    "Request timeout",
                    f"the request body stalled for {server.body_timeout_s:g} s or arrived slower than "
                    f"{MIN_BODY_BYTES_PER_S} bytes/s",
                )

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        want = len(self._queue) < MAX_PIPELINED and not self._write_paused and not self._closing
        if want != self._reading:
            self._reading = want
            if want:
                self._phase_since = self.server.now  # the pause was not the client's
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
