"""A QueryApp in process with a real QueryProcessor: one model-less app per input type (named after it),
so every well-formed predict is answered at once with the app's default."""

from __future__ import annotations

import asyncio

import orjson
from prometheus_client import CollectorRegistry

from clipper.frontends.http1 import Response
from clipper.frontends.metrics import QueryMetrics
from clipper.frontends.query_http import QueryApp
from clipper.query.processor import AppRoute, QueryProcessor
from clipper.rpc.server import Replica
from clipper.types import InputType


class NoRecorder:
    """The processor's replica recorder; these apps have no model, so no replica is ever recorded."""

    async def register(self, replica: Replica) -> int:
        raise AssertionError("no replica expected")

    def forget(self, replica: Replica) -> None:
        raise AssertionError("no replica expected")


def make_app(
    loop: asyncio.AbstractEventLoop, *, max_inputs: int = 10_000, query_token: str | None = None
) -> QueryApp:
    metrics = QueryMetrics(CollectorRegistry(), "test")
    processor = QueryProcessor(
        None, NoRecorder(), metrics, loop, cache_size_bytes=0, queue_max_entries=10_000, max_batch_size=64
    )
    for input_type in InputType:
        processor.set_app(AppRoute(input_type.wire_name, input_type, b'"none"', slo_ns=10**9))
    app = QueryApp(processor, metrics, "test", max_inputs=max_inputs, query_token=query_token)
    app.ready = True
    return app


def call(
    app: QueryApp, method: str, path: str, body: bytes = b"", authorization: bytes | None = None
) -> Response:
    """The one answer `app` gives, which for these apps comes before `handle` returns."""
    answers: list[Response] = []
    app.handle(method, path, body, answers.append, authorization)
    assert len(answers) == 1, f"{method} {path} answered {len(answers)} times"
    return answers[0]


def error_of(response: Response) -> dict[str, str]:
    """The `{"error", "cause"}` body of an error answer, checked for shape."""
    _, headers, body = response
    assert ("content-type", "application/json") in headers
    doc = orjson.loads(body)
    assert isinstance(doc, dict) and set(doc) == {"error", "cause"}, doc
    assert all(isinstance(v, str) for v in doc.values())
    return doc
