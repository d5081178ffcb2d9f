"""`GET /admin/metrics_targets`: the live query frontends as Prometheus HTTP service discovery JSON.

Prometheus polls it (admin/managers/prometheus.py writes that config), so frontends that start, stop or
restart are scraped without anyone rewriting a file. It sits under /admin, behind the same bearer token.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from fastapi import APIRouter
from pydantic import BaseModel, Field

from clipper.schema import Frontend

if TYPE_CHECKING:
    from clipper.frontends.management import Management

TARGETS_PATH = "/admin/metrics_targets"
FRONTEND_LABEL = "clipper_frontend"  # not `frontend`: clipper_frontend_info carries that label already


class TargetGroup(BaseModel):
    """One entry of Prometheus's http_sd JSON: addresses to scrape and labels to add to their series."""

    targets: list[str]
    labels: dict[str, str] = Field(default_factory=dict)


def target_groups(frontends: list[Frontend]) -> list[TargetGroup]:
    """One target per frontend, at the address that reaches it alone (frontends may share the query port,
    where the kernel picks which of them answers). Frontends that registered no such address and share a
    query port are one target, or each would be counted for the others."""
    by_address: dict[str, list[str]] = defaultdict(list)
    for f in frontends:
        by_address[f.scrape_address].append(f.frontend_id)
    return [
        TargetGroup(targets=[address], labels={FRONTEND_LABEL: ",".join(sorted(ids))})
        for address, ids in sorted(by_address.items())
    ]


def metrics_targets_router(management: Management) -> APIRouter:
    """The route, for the /admin router to include (its auth and store guards then apply)."""
    router = APIRouter()

    @router.get(TARGETS_PATH.removeprefix("/admin"), tags=["metrics"])
    async def metrics_targets() -> list[TargetGroup]:
        """Every live query frontend's own metrics address, for Prometheus's `http_sd_configs`."""
        return target_groups(await management.store.list_frontends())

    return router
