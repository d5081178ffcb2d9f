"""Bare servers the benchmark compares against: `python bench/baselines.py KIND PORT`, one process each.

granian-hello: granian RSGI embedded in uvloop (the fastest Python HTTP server we found), constant answer.
uvicorn-hello: uvicorn (httptools if installed, uvloop) with a raw ASGI app, constant answer.
granian-read-await: granian RSGI that reads the body and awaits one future before answering (the floor
    of any frontend that forwards a query and waits for its answer).
granian-parse784: granian RSGI that parses the 784-float JSON body with orjson, then answers a constant.
http1-hello, http1-read-await, http1-parse784: the same three on the query frontend's own HTTP server
    (`clipper.frontends.http1`, httptools on the event loop's thread): the floor of our edge.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

HOST = "127.0.0.1"
BODY = b'{"query_id":0,"output":0,"default":false}'
HEADERS = [("content-type", "application/json")]
KINDS = (
    "granian-hello", "granian-read-await", "uvicorn-hello", "granian-parse784",
    "http1-hello", "http1-read-await", "http1-parse784",
)  # fmt: skip


async def rsgi_hello(scope: Any, proto: Any) -> None:
    """Answers every request with a constant body."""
    proto.response_bytes(200, HEADERS, BODY)


async def rsgi_read_await(scope: Any, proto: Any) -> None:
    """The least any serving frontend does: read the body, wait once for an answer made elsewhere, reply.

    The answer is a future resolved on the next loop iteration, so this measures the cost of the two
    suspensions (body, answer) that our path has and the hello world has not.
    """
    await proto()
    answer = asyncio.get_running_loop().create_future()
    answer.get_loop().call_soon(answer.set_result, BODY)
    proto.response_bytes(200, HEADERS, await answer)


async def rsgi_parse784(scope: Any, proto: Any) -> None:
    """Reads and parses the JSON body (as our frontend must), then answers a constant."""
    doc = orjson.loads(await proto())
    if len(doc["input"]) != 784:
        proto.response_bytes(400, HEADERS, b'{"error":"bad input"}')
        return
    proto.response_bytes(200, HEADERS, BODY)


class Http1Baseline:
    """The three bare behaviours above as an `http1.HttpApp`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.loop = asyncio.get_running_loop()

    def handle(
        self, method: str, path: str, body: bytes, respond: Any, authorization: bytes | None, _: bytes | None
    ) -> None:
        if self.kind == "http1-hello":
            respond((200, HEADERS, BODY))
        elif self.kind == "http1-read-await":
            answer = self.loop.create_future()
            self.loop.call_soon(answer.set_result, BODY)
            answer.add_done_callback(lambda f: respond((200, HEADERS, f.result())))
        elif len(orjson.loads(body)["input"]) != 784:
            respond((400, HEADERS, b'{"error":"bad input"}'))
        else:
            respond((200, HEADERS, BODY))


async def asgi_hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raw ASGI constant answer (drains the request body first)."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": BODY})


def serve_granian(app: Any, port: int) -> None:
    import uvloop
    from granian.constants import Interfaces
    from granian.server.embed import Server

    server = Server(app, address=HOST, port=port, interface=Interfaces.RSGI, log_enabled=False, backlog=2048)
    uvloop.run(server.serve())


def serve_http1(kind: str, port: int) -> None:
    import uvloop

    from clipper.frontends.http1 import HttpServer

    async def run() -> None:
        server = HttpServer(Http1Baseline(kind), HOST, port, max_body_bytes=1 << 26, keepalive_timeout_s=75)
        await server.start()
        await asyncio.Event().wait()

    uvloop.run(run())


def serve_uvicorn(port: int) -> None:
    import importlib.util

    import uvicorn

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    uvicorn.run(
        asgi_hello, host=HOST, port=port, loop="uvloop", http=http, log_level="warning", access_log=False
    )


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "granian-hello":
        serve_granian(rsgi_hello, port)
    elif kind == "granian-read-await":
        serve_granian(rsgi_read_await, port)
    elif kind == "granian-parse784":
        serve_granian(rsgi_parse784, port)
    elif kind.startswith("http1-") and kind in KINDS:
        serve_http1(kind, port)
    elif kind == "uvicorn-hello":
        serve_uvicorn(port)
    else:
        raise SystemExit(f"unknown baseline {kind!r}; one of {', '.join(KINDS)}")


if __name__ == "__main__":
    main()
