"""The query frontend's HTTP edge: POST /<app>/predict, GET /metrics, GET /health.

It checks the bearer token (when one is set), parses, calls the QueryProcessor and formats Clipper's
response JSON; nothing else. Bytes are written by hand because this is the hottest code in the system and
a framework costs more than it gives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clipper.errors import ClipperError, Overloaded
from clipper.frontends.errors import HTTP_ERRORS, error_body, lookup
from clipper.frontends.feedback import FeedbackHandler
from clipper.frontends.http1 import Respond, Response
from clipper.frontends.metrics import QueryMetrics
from clipper.frontends.metrics_json import clipper_metrics
from clipper.frontends.oip import OipApp
from clipper.query.answers import DefaultAnswer, Explained, PendingRequest, embed_json
from clipper.query.fastjson import batch_length, parse_doubles
from clipper.query.inputs import TooManyInputs, check_lengths, load_json, parse_request, parse_uid
from clipper.query.processor import AppRoute, QueryProcessor
from clipper.types import InputType

logger = logging.getLogger(__name__)

JSON_HEADERS = [("content-type", "application/json")]
UNAUTHORIZED: Response = (
    401,
    [*JSON_HEADERS, ("www-authenticate", "Bearer")],
    error_body("Unauthorized", "this frontend requires an Authorization: Bearer <token> header"),
)
_NUMERIC = (InputType.DOUBLES, InputType.FLOATS, InputType.INTEGERS)
_OPEN_PATHS = frozenset(("/health", "/v2/health/live", "/v2/health/ready"))  # probes need no token


def render_answers(request: PendingRequest, batch: bool) -> tuple[bytes, list[DefaultAnswer]]:
    """Response body and the default answers in it (for the metrics, by reason)."""
    parts = []
    defaults: list[DefaultAnswer] = []
    default_json = request.default_output
    for i, answer in enumerate(request.answers):
        qid = request.first_query_id + i
        if isinstance(answer, DefaultAnswer):
            defaults.append(answer)
            parts.append(
                b'{"query_id":%d,"output":%b,"default":true,"default_explanation":%b}'
                % (qid, default_json, orjson.dumps(answer.explanation))
            )
        elif isinstance(answer, Explained):
            parts.append(
                b'{"query_id":%d,"output":%b,"default":false,"explanation":%b}'
                % (qid, embed_json(answer.output), orjson.dumps(answer.explanation))
            )
        else:
            output = embed_json(answer or b"")  # every slot is set once the request is done
            parts.append(b'{"query_id":%d,"output":%b,"default":false}' % (qid, output))
    if batch:
        return b'{"batch_predictions":[%b]}' % b",".join(parts), defaults
    return parts[0], defaults


class QueryApp:
    """The HTTP application of one query frontend, served by `http1.HttpServer`."""

    def __init__(
        self,
        processor: QueryProcessor,
        metrics: QueryMetrics,
        frontend_id: str,
        *,
        max_inputs: int,
        query_token: str | None = None,
        feedback: FeedbackHandler | None = None,
    ) -> None:
        """`max_inputs` bounds one request's batch; with `query_token`, all but /health need the token;
        `feedback` takes `/update` (without one it answers 501)."""
        self.processor = processor
        self.feedback = feedback
        self._updates: set[asyncio.Task[None]] = set()
        self.metrics = metrics
        self.frontend_id = frontend_id
        self.max_inputs = max_inputs
        self._token = None if query_token is None else query_token.encode()
        self.ready = False
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._started = time.monotonic()  # meters in /metrics/json are mean rates since then
        self.oip = OipApp(self)

    def handle(
        self,
        method: str,
        path: str,
        body: bytes,
        respond: Respond,
        authorization: bytes | None,
        inference_header: bytes | None = None,
    ) -> None:
        """Route one request (the `HttpApp` of `http1.HttpServer`); `respond` is called once."""
        if self._token is not None and path not in _OPEN_PATHS and not self.authorized(authorization):
            respond(UNAUTHORIZED)
            return
        parts = path.strip("/").split("/")
        if method == "POST" and len(parts) == 2 and parts[1] == "predict":
            self.predict(parts[0], body, respond)
            return
        if parts[0] == "v2":  # the Open Inference Protocol
            self.oip.handle(method, parts, body, respond, inference_header)
            return
        if method == "HEAD":  # answered as GET; the server sends the headers only
            method = "GET"
        if method == "GET" and path == "/metrics":
            respond((200, [("content-type", CONTENT_TYPE_LATEST)], generate_latest(self.metrics.registry)))
        elif method == "GET" and path == "/metrics/json":  # Clipper's JSON shape, for Clipper clients
            uptime_s = time.monotonic() - self._started
            respond((200, JSON_HEADERS, orjson.dumps(clipper_metrics(self.metrics.registry, uptime_s))))
        elif method == "GET" and path == "/health":
            ok = self.ready and not self.draining
            state = "ok" if ok else "draining" if self.draining else "starting"
            body = orjson.dumps({"status": state, "frontend_id": self.frontend_id})
            respond((200 if ok else 503, JSON_HEADERS, body))
        elif method == "POST" and len(parts) == 2 and parts[1] == "update":
            if self.feedback is None:
                respond((501, JSON_HEADERS, error_body("Not implemented", "this frontend takes no feedback")))
            else:
                task = asyncio.ensure_future(self.update(parts[0], body, respond))
                self._updates.add(task)
                task.add_done_callback(self._updates.discard)
        else:
            respond((404, JSON_HEADERS, error_body("Not found", f"No route for {method} {path}")))

    def answered(self) -> None:
        """One request counted in `in_flight` is answered (or refused); `drained` waits for none left."""
        self.in_flight -= 1
        if not self.in_flight:
            self._idle.set()

    def authorized(self, authorization: bytes | None) -> bool:
        """Whether an Authorization header value carries this frontend's bearer token."""
        assert self._token is not None
        if authorization is None:
            return False
        scheme, _, token = authorization.strip().partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._token)

    async def drained(self, timeout_s: float) -> None:
        """Wait until every predict request in hand is answered, at most `timeout_s`."""
        if self.in_flight:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout_s)

    def parse(self, app_name: str, raw: bytes) -> tuple[AppRoute, list[bytes], bool, str | None, str | None]:
        """The app's route, then the body's inputs (as container bytes), whether it is a batch, version, and
        the `uid` (read for apps with a selection policy, which may keep a choice or a state per user)."""
        route = self.processor.route(app_name)
        if len(raw) > 3 * self.max_inputs:  # shorter bodies cannot hold more (`[],` or `"",` per input)
            self.refuse_huge_batch(raw, route.input_type)
        uid = None
        parsed = (  # a uid, which the fast path does not read, sends the body the general way
            parse_doubles(raw, self.max_inputs)
            if route.input_type is InputType.DOUBLES and (route.selection is None or b'"uid"' not in raw)
            else None
        )
        if parsed is not None and route.input_shape is not None:  # the fast path reads flat inputs only
            check_lengths(parsed[0], parsed[1], route.input_type, route.input_shape)
        if parsed is None:
            body = load_json(raw)
            # Both `true` and `false` contain an "e", and one memchr over the body is far cheaper than a
            # check per element; a body with an "e" elsewhere (exponents, "version") just takes the check.
            parsed = parse_request(body, route.input_type, b"e" in raw, self.max_inputs, route.input_shape)
            if route.selection is not None and isinstance(body, dict):
                uid = parse_uid(body.get("uid"))
        return (route, *parsed, uid)

    def refuse_huge_batch(self, raw: bytes, input_type: InputType) -> None:
        """TooManyInputs for a batch over `max_inputs`, found without decoding the body into objects.

        Each numeric input opens one `[`, each string input has two quotes and each `json` input but the
        first follows a comma, so counting those bytes bounds the batch at memchr speed; only a body over
        the bound is counted exactly (by simdjson).
        """
        if input_type is InputType.JSON:
            bound = raw.count(b",") + 1
        else:
            bound = raw.count(b"[") if input_type in _NUMERIC else raw.count(b'"') // 2
        if bound > self.max_inputs:
            count = batch_length(raw)
            if count is not None and count > self.max_inputs:
                raise TooManyInputs(count, self.max_inputs)

    def error_response(self, app_name: str, error: ClipperError) -> Response:
        """Clipper's `{"error", "cause"}` body with the status this edge gives the error's class."""
        status, name = lookup(HTTP_ERRORS, error)
        if isinstance(error, Overloaded):
            self.metrics.rejected(app_name)
            return status, [*JSON_HEADERS, ("retry-after", "1")], error_body(name, str(error))
        return status, JSON_HEADERS, error_body(name, str(error))

    async def update(self, app_name: str, raw: bytes, respond: Respond) -> None:
        """Answer one feedback request once the policy's state is updated (or why it was not)."""
        assert self.feedback is not None
        try:
            reply = await self.feedback.update(app_name, raw)
        except ClipperError as e:
            respond(self.error_response(app_name, e))
            return
        respond((200, JSON_HEADERS, orjson.dumps(reply)))

    def predict(self, app_name: str, raw: bytes, respond: Respond) -> None:
        """Answer one predict request; domain errors become Clipper-shaped JSON errors."""
        start = time.perf_counter()
        try:
            route, inputs, batch, version, uid = self.parse(app_name, raw)
        except ClipperError as e:
            respond(self.error_response(app_name, e))
            return

        def answer(request: PendingRequest) -> None:  # may run inside submit (cache hits, no model)
            self.answered()
            out, defaults = render_answers(request, batch)
            self.metrics.request_done(app_name, time.perf_counter() - start, len(request.answers), defaults)
            respond((200, JSON_HEADERS, out))

        self.in_flight += 1
        try:
            self.processor.submit(route, inputs, version, answer, uid)
        except ClipperError as e:
            self.answered()
            respond(self.error_response(app_name, e))
