"""Replica management on /admin (ours): scale a model version, list its replicas, read their last log lines.

Validated like the rest of the API (400 with a plain-text message naming the field or the unknown model,
nothing done), then carried out by the cluster's own container manager through `Management.replica_control`
in a thread; 501 when this frontend was started without one, saying how to enable it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ValidationError

from clipper.errors import ConfigConflict, InvalidInput
from clipper.schema import (
    NO_CONTAINER,
    Model,
    ModelLogs,
    ModelLogsQuery,
    ReplicaInfo,
    ReplicasQuery,
    SetNumReplicasRequest,
)

if TYPE_CHECKING:
    from clipper.frontends.management import Management

Q = TypeVar("Q", bound=BaseModel)

CANNOT_ACT: dict[int | str, dict[str, Any]] = {
    501: {
        "description": "This management frontend cannot act on the cluster's containers (started without "
        "access to them); the plain-text message says why and how to enable it.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


def _query_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI parameters of a route that parses its query string itself (to answer 400, not 422)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    params = [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]
    return {"parameters": params}


def _parse_query(request: Request, model: type[Q]) -> Q:
    """The query string against `model`, or a 400 naming each field and its problem."""
    from clipper.frontends.management_http import describe_errors

    values = dict(request.query_params)
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise InvalidInput(f"Error parsing query: {describe_errors(e)}") from None


async def _model(management: Management, name: str, version: str) -> Model:
    found = await management.store.get_model(name, version)
    if found is None:
        raise ConfigConflict(f"model with name '{name}' and version '{version}' does not exist")
    return found


def add_replica_routes(admin: APIRouter, management: Management) -> None:
    """`POST /admin/set_num_replicas`, `GET /admin/get_replicas`, `GET /admin/get_model_logs` on `admin`."""
    from clipper.frontends.management_http import _body_doc, _json, parse_body

    scaling = asyncio.Lock()  # one resize at a time: each reads the replicas it then adds to or stops

    @admin.post(
        "/set_num_replicas",
        response_class=PlainTextResponse,
        openapi_extra=_body_doc(SetNumReplicasRequest),
        tags=["replicas"],
        responses=CANNOT_ACT,
    )
    async def set_num_replicas(request: Request) -> str:
        """Start or stop replicas of a registered version until `num_replicas` run (ours)."""
        req = await parse_body(request, SetNumReplicasRequest)
        if req.num_replicas > management.max_replicas:
            raise InvalidInput(
                f"num_replicas: {req.num_replicas} is more than this cluster allows "
                f"({management.max_replicas}; CLIPPER_MAX_REPLICAS of the management frontend)"
            )
        model = await _model(management, req.model_name, req.model_version)
        if model.container_name == NO_CONTAINER:
            raise ConfigConflict(
                f"Cannot resize the replica set for containerless model {req.model_name}:{req.model_version}"
            )
        control = management.replica_control
        async with scaling:
            await asyncio.to_thread(control.scale, model, req.num_replicas)
        return (
            f"Successfully set the replicas of model '{req.model_name}' version '{req.model_version}' "
            f"to {req.num_replicas}"
        )

    @admin.get(
        "/get_replicas",
        openapi_extra=_query_doc(ReplicasQuery),
        tags=["replicas"],
        responses={
            200: {"content": {"application/json": {"schema": _list_schema(ReplicaInfo)}}},
            **CANNOT_ACT,
        },
    )
    async def get_replicas(request: Request) -> Response:
        """The version's replicas as its manager runs them: pid, container or pod, start, state (ours)."""
        q = _parse_query(request, ReplicasQuery)
        await _model(management, q.model_name, q.model_version)
        found = await asyncio.to_thread(management.replica_control.replicas, q.model_name, q.model_version)
        return _json([r.model_dump() for r in found])

    @admin.get(
        "/get_model_logs",
        openapi_extra=_query_doc(ModelLogsQuery),
        tags=["replicas"],
        responses={
            200: {"content": {"application/json": {"schema": ModelLogs.model_json_schema()}}},
            **CANNOT_ACT,
        },
    )
    async def get_model_logs(request: Request) -> Response:
        """The last `lines` lines of each replica's log, prefixed with `[<replica>] ` (ours)."""
        q = _parse_query(request, ModelLogsQuery)
        await _model(management, q.model_name, q.model_version)
        lines = await asyncio.to_thread(
            management.replica_control.log_lines, q.model_name, q.model_version, q.lines
        )
        return _json(ModelLogs(lines=lines).model_dump())


def _list_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "array", "items": model.model_json_schema()}
