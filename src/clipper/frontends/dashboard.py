"""The web dashboard's routes on the management frontend: the page, its static files, the cluster view.

The page and its assets (`dashboard_static/`, shipped in the package: no build step, no CDN) hold no
secret and are served to anyone; every number they show comes from /admin calls, which need the admin
token when the cluster has one (the page asks for it and keeps it in the tab's sessionStorage).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from clipper.cluster_view_schema import ClusterViewReply
from clipper.frontends.cluster_view import ClusterView

STATIC_DIR = Path(__file__).with_name("dashboard_static")


def add_dashboard(app: FastAPI, admin: APIRouter, view: ClusterView, auth_required: bool) -> None:
    """Serve /dashboard (page and assets) on `app` and GET /admin/cluster_view on the guarded `admin`."""

    @admin.get("/cluster_view", tags=["dashboard"], response_model=ClusterViewReply)
    async def cluster_view() -> ClusterViewReply:
        """Apps, models and frontends with live rates and latencies over every query frontend's metrics
        (rates over its last two scrapes; scraped at most once a second; a silent frontend: `up: false`)."""
        return await view.view()

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/dashboard/auth", include_in_schema=False)
    async def auth() -> dict[str, bool]:
        """Whether /admin needs a token, so the page asks for it before its first call is refused."""
        return {"required": auth_required}

    app.mount("/dashboard/static", StaticFiles(directory=str(STATIC_DIR)), name="dashboard-static")
