"""Clipper's /admin REST API over `Management`: parse the body, call one operation, format the reply.

Same paths, fields, messages and statuses as Clipper 0.4 (reference §3.1): mutating calls answer plain
text, getters JSON, rejected calls 400 with the message as plain text. Errors Clipper never produced are
FastAPI's JSON `{"detail": ...}`: 404/405 for unknown routes (Clipper dropped the connection), 503 while
Redis is unreachable. The request Content-Type is not checked; the body is always read as JSON.
With an admin token, every /admin route but /admin/ping (left open for health checks; it reveals only
liveness) needs `Authorization: Bearer <token>`, else 401 with a JSON `{"error", "cause"}` body.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, SecretStr, ValidationError
from redis.exceptions import RedisError
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from clipper.errors import ClipperError, InvalidInput
from clipper.frontends.cluster_view import ClusterView
from clipper.frontends.dashboard import add_dashboard
from clipper.frontends.errors import MANAGEMENT_ERRORS, lookup
from clipper.frontends.management_ops import add_replica_routes
from clipper.frontends.metrics_targets import metrics_targets_router
from clipper.schema import (
    AddAppRequest,
    AddModelLinksRequest,
    AddModelRequest,
    AppLinksRequest,
    AppNameRequest,
    ContainerRequest,
    Detail,
    ErrorBody,
    ModelLinksRequest,
    ModelVersionRequest,
    SetAppPolicyRequest,
    StateRequest,
    VerboseRequest,
)
from clipper.settings import reveal

if TYPE_CHECKING:  # at run time `management` may be `__main__`; importing it again would load it twice
    from clipper.frontends.management import Management

R = TypeVar("R", bound=BaseModel)
Handler = TypeVar("Handler", bound=Callable[..., Any])


async def management_error_handler(_request: Request, exc: Exception) -> Response:
    """A rejected call: the message as a plain-text body, as Clipper's clients expect."""
    assert isinstance(exc, ClipperError)
    return PlainTextResponse(exc.msg, status_code=lookup(MANAGEMENT_ERRORS, exc))


class NotAuthenticated(Exception):
    """The request lacks the cluster's admin token, or carries another one."""


async def not_authenticated_handler(_request: Request, exc: Exception) -> Response:
    """401 with the challenge HTTP clients expect and an error body like the query frontend's."""
    body = {"error": "Unauthorized", "cause": str(exc)}
    return Response(
        orjson.dumps(body),
        status_code=401,
        media_type="application/json",
        headers={"WWW-Authenticate": "Bearer"},
    )


def require_bearer(token: SecretStr) -> Callable[..., Awaitable[None]]:
    """A dependency that admits only `Authorization: Bearer <token>`; constant-time comparison."""
    scheme = HTTPBearer(
        auto_error=False,
        scheme_name="admin token",
        description="The cluster's admin token: `<state dir>/secrets/auth_token` of a local cluster.",
    )
    expected = token.get_secret_value().encode()

    # `scheme` is local, so it cannot go in an Annotated hint (resolved against module globals).
    async def check(
        credentials: HTTPAuthorizationCredentials | None = Depends(scheme),  # noqa: B008
    ) -> None:
        if credentials is None:
            raise NotAuthenticated(
                "This cluster requires `Authorization: Bearer <token>`; ClipperConnection sends it "
                "when it can read the cluster's secrets, or from CLIPPER_AUTH_TOKEN."
            )
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise NotAuthenticated("The bearer token is not this cluster's admin token.")

    return check


async def parse_body(request: Request, model: type[R]) -> R:
    """Validate the body against `model`, or raise Clipper's `Error parsing JSON: ...` naming the field."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as e:
        raise InvalidInput(
            f"Error parsing JSON: {describe_errors(e)}. Expected JSON schema: {schema_text(model)}"
        ) from None


def describe_errors(error: ValidationError) -> str:
    """One clause per problem, each naming its field, in Clipper's wording where Clipper had one."""
    parts = []
    for err in error.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"])
        match err["type"]:
            case "missing":
                parts.append(f"JSON object does not have required key: {field}")
            case "extra_forbidden":
                parts.append(f"{field}: unknown key")
            case "value_error":
                parts.append(f"{field}: {err['ctx']['error']}")
            case "json_invalid":
                parts.append(f"JSON parse error: {err['ctx']['error']}")
            case _:
                parts.append(f"{field}: {err['msg']}" if field else err["msg"])
    return "; ".join(parts)


def schema_text(model: type[BaseModel]) -> str:
    """The expected body in Clipper's notation, e.g. `{"name" := string, "labels" := [string]}`."""
    props: dict[str, dict[str, Any]] = model.model_json_schema()["properties"]

    def kind(prop: dict[str, Any]) -> str:
        if prop.get("type") == "array":
            return f"[{kind(prop['items'])}]"
        if all("type" in p for p in prop.get("anyOf", [{}])):  # an optional field: `[integer] | null`
            return " | ".join(kind(p) for p in prop["anyOf"])
        return str(prop.get("type", "any"))

    return "{" + ", ".join(f'"{name}" := {kind(p)}' for name, p in props.items()) + "}"


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for a route that parses its body itself (so no Content-Type is required)."""
    schema = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": True, "content": schema}}


UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "The config store (Redis) is not reachable yet, or stopped answering.",
        "content": {"application/json": {"schema": Detail.model_json_schema()}},
    }
}
# Every /admin call: the outcomes besides 200 that Clipper's clients see.
ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "Rejected, nothing written: Clipper's message as plain text, naming the field or "
        "resource and the problem (bad JSON, a failed check, an unknown or existing name).",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    **UNAVAILABLE,
}


IN_USE: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "Refused, nothing written: the version is current while the model has others; the "
        "plain-text message says which version to make current first.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}
NEEDED_BY_POLICY: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "Refused, nothing written: the app's selection policy needs the model (its params "
        "name it, e.g. split weights or the shadow primary); the message says to change the policy first.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


def _serve_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the swagger-ui-bundle-v2 package, not a CDN, so the docs work offline."""
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/assets/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # the default badge asks an online validator
        )


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


def _dump(record: BaseModel | None) -> Response:
    """A record as JSON, or `{}` for a missing one (Clipper answers 200 `{}`, not 404)."""
    return _json(record.model_dump() if record is not None else {})


def build_management_app(
    management: Management, auth_token: SecretStr | None = None, query_token: SecretStr | None = None
) -> FastAPI:
    """The management API as an ASGI app; OpenAPI docs at /docs. `auth_token`: required on /admin;
    `query_token`: sent when the cluster view scrapes the query frontends."""
    app = FastAPI(
        title="Clipper management API",
        summary="Register applications and models, link them, inspect replicas (Clipper 0.4 compatible).",
        version=version("clipper"),
        docs_url=None,
        redoc_url=None,
    )
    _serve_docs(app)
    app.add_exception_handler(ClipperError, management_error_handler)
    app.add_exception_handler(NotAuthenticated, not_authenticated_handler)

    @app.exception_handler(RedisError)
    async def _store_unavailable(_request: Request, exc: RedisError) -> Response:
        detail = f"Config store at {management.redis_address} unavailable: {exc}"
        return _json({"detail": detail}, 503)

    async def require_store() -> None:
        if not management.ready:
            raise HTTPException(503, f"Waiting for Redis at {management.redis_address}")

    @app.get("/admin/ping", response_class=PlainTextResponse, tags=["health"], responses=UNAVAILABLE)
    async def ping() -> str:
        """`PONG` once the config store answers; 503 before (the admin client polls this)."""
        if not await management.ping():
            raise HTTPException(503, f"Waiting for Redis at {management.redis_address}")
        return "PONG"

    guards = [Depends(require_store)]
    if auth_token is not None:  # checked first: no answer, not even 503, to a caller without the token
        guards.insert(0, Depends(require_bearer(auth_token)))
    responses: dict[int | str, dict[str, Any]] = {}
    if auth_token is not None:
        responses[401] = {
            "description": "Missing or wrong bearer token.",
            "content": {"application/json": {"schema": ErrorBody.model_json_schema()}},
        }
    admin = APIRouter(prefix="/admin", dependencies=guards, responses=responses)

    def text_post(
        path: str, body: type[BaseModel], tag: str, responses: dict[int | str, dict[str, Any]] | None = None
    ) -> Callable[[Handler], Handler]:
        """A mutating call: a JSON body documented as `body`, answered in plain text as Clipper does."""
        return admin.post(
            path,
            response_class=PlainTextResponse,
            openapi_extra=_body_doc(body),
            tags=[tag],
            responses=responses,
        )

    @text_post("/add_app", AddAppRequest, "applications")
    async def add_app(request: Request) -> str:
        """Register an application (its `/<name>/predict` endpoint)."""
        req = await parse_body(request, AddAppRequest)
        await management.add_app(req)
        return f"Successfully added application with name '{req.name}'"

    @text_post("/delete_app", AppNameRequest, "applications")
    async def delete_app(request: Request) -> str:
        """Delete an application with its link and state."""
        req = await parse_body(request, AppNameRequest)
        await management.delete_app(req.name)
        return f"Successfully deleted application with name '{req.name}'"

    @text_post("/add_model", AddModelRequest, "models")
    async def add_model(request: Request) -> str:
        """Register a model version; it becomes the current version at once."""
        req = await parse_body(request, AddModelRequest)
        await management.add_model(req)
        return f"Successfully added model with name '{req.model_name}' and input type '{req.input_type}'"

    @text_post("/delete_versioned_model", ModelVersionRequest, "models", IN_USE)
    async def delete_versioned_model(request: Request) -> str:
        """Delete a model version and its replica records."""
        req = await parse_body(request, ModelVersionRequest)
        await management.delete_model(req.model_name, req.model_version)
        return f"Successfully deleted model with name '{req.model_name}' and version '{req.model_version}'"

    @text_post("/set_model_version", ModelVersionRequest, "models")
    async def set_model_version(request: Request) -> str:
        """Make an existing version the one queries go to."""
        req = await parse_body(request, ModelVersionRequest)
        await management.set_model_version(req.model_name, req.model_version)
        return f"Successfully set model with name '{req.model_name}' to version '{req.model_version}'"

    @text_post("/add_model_links", AddModelLinksRequest, "links")
    async def add_model_links(request: Request) -> str:
        """Link an application to its (one) model."""
        req = await parse_body(request, AddModelLinksRequest)
        name = await management.add_links(req.app_name, list(req.model_names))
        return f"Successfully linked model with name '{name}' to application '{req.app_name}'"

    @text_post("/delete_model_links", ModelLinksRequest, "links", NEEDED_BY_POLICY)
    async def delete_model_links(request: Request) -> str:
        """Unlink models from an application."""
        req = await parse_body(request, ModelLinksRequest)
        await management.delete_links(req.app_name, list(req.model_names))
        return "Success!"

    @admin.post("/get_all_applications", openapi_extra=_body_doc(VerboseRequest), tags=["applications"])
    async def get_all_applications(request: Request) -> Response:
        """Application names, or (verbose) every application's record."""
        req = await parse_body(request, VerboseRequest)
        names = await management.app_names()
        if not req.verbose:
            return _json(names)
        infos = [await management.app_info(name) for name in names]
        return _json([info.model_dump() for info in infos if info is not None])

    @admin.post("/get_application", openapi_extra=_body_doc(AppNameRequest), tags=["applications"])
    async def get_application(request: Request) -> Response:
        """One application with its linked models, or `{}`."""
        req = await parse_body(request, AppNameRequest)
        return _dump(await management.app_info(req.name))

    @admin.post("/get_linked_models", openapi_extra=_body_doc(AppLinksRequest), tags=["links"])
    async def get_linked_models(request: Request) -> Response:
        """Names of the models linked to an application."""
        req = await parse_body(request, AppLinksRequest)
        return _json(await management.linked_models(req.app_name))

    @admin.post("/get_all_models", openapi_extra=_body_doc(VerboseRequest), tags=["models"])
    async def get_all_models(request: Request) -> Response:
        """`<name>:<version>` of every version, or (verbose) their records."""
        req = await parse_body(request, VerboseRequest)
        models = await management.models()
        if req.verbose:
            return _json([m.model_dump() for m in models])
        return _json([f"{m.model_name}:{m.model_version}" for m in models])

    @admin.post("/get_model", openapi_extra=_body_doc(ModelVersionRequest), tags=["models"])
    async def get_model(request: Request) -> Response:
        """One model version's record, or `{}`."""
        req = await parse_body(request, ModelVersionRequest)
        return _dump(await management.model_info(req.model_name, req.model_version))

    @admin.post("/get_all_containers", openapi_extra=_body_doc(VerboseRequest), tags=["containers"])
    async def get_all_containers(request: Request) -> Response:
        """`<name>:<version>:<replica_id>` of every connected replica, or (verbose) their records."""
        req = await parse_body(request, VerboseRequest)
        containers = await management.containers()
        if req.verbose:
            return _json([c.model_dump() for c in containers])
        return _json([f"{c.model_id}:{c.model_replica_id}" for c in containers])

    @admin.post("/get_container", openapi_extra=_body_doc(ContainerRequest), tags=["containers"])
    async def get_container(request: Request) -> Response:
        """One replica's record, or `{}`."""
        req = await parse_body(request, ContainerRequest)
        return _dump(await management.container_info(req.model_name, req.model_version, req.replica_id))

    @text_post("/set_app_policy", SetAppPolicyRequest, "selection")
    async def set_app_policy(request: Request) -> str:
        """Set how the app chooses among its linked models (ours); params are checked against them."""
        req = await parse_body(request, SetAppPolicyRequest)
        await management.set_app_policy(req)
        return f"Successfully set the policy of application '{req.name}' to {req.policy}"

    @admin.post("/get_app_policy", openapi_extra=_body_doc(AppNameRequest), tags=["selection"])
    async def get_app_policy(request: Request) -> Response:
        """The app's policy, its params and each linked model's current weight (ours)."""
        req = await parse_body(request, AppNameRequest)
        return _json((await management.app_policy(req.name)).model_dump(exclude_none=True))

    @text_post("/get_state", StateRequest, "applications")
    async def get_state(request: Request) -> str:
        """The application's raw default output (empty for an unknown application)."""
        req = await parse_body(request, StateRequest)
        return await management.state(req.app_name, req.uid)

    admin.include_router(metrics_targets_router(management))
    add_dashboard(app, admin, ClusterView(management.store, reveal(query_token)), auth_token is not None)
    add_replica_routes(admin, management)
    app.include_router(admin, responses=ADMIN_RESPONSES)
    return app
