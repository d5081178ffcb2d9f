"""The Open Inference Protocol (KServe V2 REST) on the query port, next to Clipper's API; an app is a model.

Health, server and model metadata, model readiness, and infer. Infer sends the tensor's rows down the same
`QueryProcessor.submit` path as an `input_batch`, so batching, SLOs, the cache, selection policies and
version pinning (`/versions/{v}`) behave exactly as for Clipper's JSON. Errors are the protocol's
`{"error": "..."}` with a 4xx (or 503 when overloaded).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from clipper import __version__
from clipper.errors import ClipperError, InvalidInput, Overloaded, UnknownVersion
from clipper.frontends.errors import OIP_ERRORS, lookup
from clipper.frontends.http1 import Headers, Respond, Response
from clipper.frontends.oip_tensors import DATATYPES, input_shape, parse_infer, render_outputs
from clipper.query.answers import PendingRequest
from clipper.query.processor import AppRoute

if TYPE_CHECKING:
    from clipper.frontends.query_http import QueryApp

JSON_HEADERS: Headers = [("content-type", "application/json")]
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "clipper"
_OUTPUTS = [
    {"name": "output", "datatype": "BYTES", "shape": [-1]},
    {"name": "default", "datatype": "BOOL", "shape": [-1]},
]


def oip_error(status: int, message: str, headers: Headers = JSON_HEADERS) -> Response:
    """The protocol's error body, `{"error": <message>}`."""
    return status, headers, orjson.dumps({"error": message})


class OipApp:
    """The `/v2` routes of a query frontend, served from its `QueryApp` (same processor, metrics, token)."""

    def __init__(self, query: QueryApp) -> None:
        self.query = query

    def handle(
        self, method: str, parts: list[str], body: bytes, respond: Respond, header_length: bytes | None
    ) -> None:
        """Route one request whose path splits into `parts` (the first is `v2`); `respond` is called once."""
        try:
            if method == "POST" and parts[-1] == "infer" and len(parts) in (4, 6):
                route, version = self.model(parts[:-1])
                self.infer(route, version, body, header_length, respond)
            elif method in ("GET", "HEAD"):
                respond(self.get(parts))
            else:
                respond(oip_error(404, f"No route for {method} /{'/'.join(parts)}"))
        except _NoRoute as e:
            respond(oip_error(404, str(e)))
        except ClipperError as e:
            respond(self.error(e, parts))

    def get(self, parts: list[str]) -> Response:
        """Health, server metadata, model metadata and model readiness."""
        query = self.query
        if parts == ["v2"]:
            return (
                200,
                JSON_HEADERS,
                orjson.dumps({"name": "clipper", "version": __version__, "extensions": EXTENSIONS}),
            )
        if parts == ["v2", "health", "live"]:
            return 200, JSON_HEADERS, b'{"live":true}'
        if parts == ["v2", "health", "ready"]:  # the protocol answers "false" with a 4xx
            ok = query.ready and not query.draining
            return (200 if ok else 400), JSON_HEADERS, orjson.dumps({"ready": ok})
        ready = parts[-1] == "ready"
        route, version = self.model(parts[:-1] if ready else parts)
        if ready:
            ok = self.serving(route, version)
            return (200 if ok else 400), JSON_HEADERS, orjson.dumps({"name": route.name, "ready": ok})
        return 200, JSON_HEADERS, orjson.dumps(self.metadata(route))

    def model(self, parts: list[str]) -> tuple[AppRoute, str | None]:
        """The app and pinned version named by `v2/models/{name}[/versions/{v}]`; 404 for anything else."""
        if len(parts) not in (3, 5) or parts[1] != "models" or (len(parts) == 5 and parts[3] != "versions"):
            raise _NoRoute("/" + "/".join(parts))
        route = self.query.processor.route(parts[2])
        version = parts[4] if len(parts) == 5 else None
        if version is not None and (route.model, version) not in self.query.processor.model_batch_sizes:
            linked = f"model {route.model}" if route.model else f"app {route.name} (no single linked model)"
            raise UnknownVersion(f"Requested version: {version} does not exist for {linked}")
        return route, version

    def metadata(self, route: AppRoute) -> dict[str, object]:
        """Model metadata: the app's one input (datatype and shape) and the two outputs of every answer."""
        versions = sorted(v for m, v in self.query.processor.model_batch_sizes if m == route.model)
        shape = input_shape(route.input_type, route.input_shape)
        return {
            "name": route.name,
            "versions": versions,
            "platform": PLATFORM,
            "inputs": [{"name": "input", "datatype": DATATYPES[route.input_type], "shape": shape}],
            "outputs": _OUTPUTS,
        }

    def serving(self, route: AppRoute, version: str | None) -> bool:
        """Whether a replica serves the app here (of the pinned version, if one is named)."""
        models = route.selection.models if route.selection is not None else [route.model]
        return any(model is not None and self.query.processor.serving(model, version) for model in models)

    def infer(
        self, route: AppRoute, version: str | None, raw: bytes, header_length: bytes | None, respond: Respond
    ) -> None:
        """Submit the tensor's rows as one batch; answer in the protocol's JSON (binary data on request)."""
        start = time.perf_counter()
        query = self.query
        request = parse_infer(raw, header_length, route.input_type, route.input_shape, query.max_inputs)
        answered_version = version or query.processor.current_versions.get(route.model or "")
        name = route.name

        def answer(pending: PendingRequest) -> None:  # may run inside submit (cache hits, no model)
            query.answered()
            outputs, binary, defaults = render_outputs(
                pending.answers, pending.default_output, request.outputs
            )
            head: dict[str, object] = {"model_name": name}
            if answered_version is not None:
                head["model_version"] = answered_version
            if request.id is not None:
                head["id"] = request.id
            head["outputs"] = outputs
            body = orjson.dumps(head)
            query.metrics.request_done(name, time.perf_counter() - start, len(pending.answers), defaults)
            if binary:
                headers = [("content-type", "application/octet-stream"),
                           ("inference-header-content-length", str(len(body)))]  # fmt: skip
                respond((200, headers, body + binary))
            else:
                respond((200, JSON_HEADERS, body))

        query.in_flight += 1
        try:
            query.processor.submit(route, request.inputs, version, answer)
        except ClipperError:
            query.answered()
            raise

    def error(self, error: ClipperError, parts: list[str]) -> Response:
        """The protocol's error with the status this edge gives the error's class."""
        status = lookup(OIP_ERRORS, error)
        if isinstance(error, Overloaded):
            if len(parts) > 2:
                self.query.metrics.rejected(parts[2])
            return oip_error(status, str(error), [*JSON_HEADERS, ("retry-after", "1")])
        return oip_error(status, str(error))


class _NoRoute(InvalidInput):
    """A `/v2` path the protocol does not have (404)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"No route for {path}")
