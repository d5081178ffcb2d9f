"""`clipper top`: the cluster's live numbers (the management frontend's /admin/cluster_view) as rich tables.

The view is read with the cluster's admin token, as every other command reads the management API; when it
cannot be read, the header says why in one line and the next refresh tries again.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime

import requests
from pydantic import ValidationError
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from clipper.admin.managers.base import ContainerManager
from clipper.cluster_view_schema import ClusterViewReply
from clipper.errors import ClipperError

FETCH_TIMEOUT_S = 3.0  # also the longest Ctrl-C may wait for a request in progress
WAKE_S = 0.05  # how soon Ctrl-C ends the wait between refreshes


class ViewUnavailable(ClipperError):
    """The cluster view could not be read; the message says why in one line."""


class ClusterViewClient:
    """Reads the cluster view from the manager's admin address with the manager's admin token."""

    def __init__(self, manager: ContainerManager) -> None:
        self._manager = manager
        self._http = requests.Session()

    def fetch(self) -> ClusterViewReply:
        """One view, or ViewUnavailable naming what went wrong (no cluster, unreachable, token refused)."""
        addr = self._manager.get_admin_addr()  # ClusterError (a ClipperError) when there is no such cluster
        token = self._manager.get_admin_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"http://{addr}/admin/cluster_view"
        try:
            r = self._http.get(url, headers=headers, timeout=FETCH_TIMEOUT_S)
        except requests.RequestException as e:
            raise ViewUnavailable(f"management frontend at {addr} is unreachable ({type(e).__name__})") from e
        if r.status_code in (401, 403):
            raise ViewUnavailable(
                f"management frontend at {addr} refused the admin token ({r.status_code}); "
                "check the cluster's secrets/auth_token or CLIPPER_AUTH_TOKEN"
            )
        if r.status_code != 200:
            raise ViewUnavailable(f"GET {url} answered {r.status_code}: {r.text[:200]}")
        try:
            return ClusterViewReply.model_validate_json(r.content)
        except ValidationError as e:
            raise ViewUnavailable(f"GET {url} answered JSON that is not a cluster view: {e}") from e


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _latency(value: float | None, slo_ms: float | None = None) -> Text:
    """Milliseconds, red when over the SLO."""
    over = value is not None and slo_ms is not None and value > slo_ms
    return Text(_number(value), style="bold red" if over else "")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def apps_table(view: ClusterViewReply) -> Table:
    """One row per app: load, latency against its SLO, default answers by reason, cache hits, models."""
    table = Table(title="Applications", title_justify="left", expand=True)
    for column in ("app", "req/s", "p50 ms", "p99 ms", "SLO ms", "defaults/s", "cache hit", "models"):
        table.add_column(column, justify="left" if column in ("app", "defaults/s", "models") else "right")
    for app in sorted(view.apps, key=lambda a: a.name):
        defaults = ", ".join(f"{why} {rate:.1f}" for why, rate in sorted(app.defaults_per_s.items()) if rate)
        table.add_row(
            app.name,
            _number(app.requests_per_s),
            _latency(app.p50_ms, app.slo_ms),
            _latency(app.p99_ms, app.slo_ms),
            _number(app.slo_ms),
            Text(defaults or "-", style="yellow"),
            _ratio(app.cache_hit_ratio),
            ", ".join(app.models) or "-",
        )
    return table


def models_table(view: ClusterViewReply) -> Table:
    """One row per model version; `*` marks the current version."""
    table = Table(title="Models (* = current version)", title_justify="left", expand=True)
    columns = ("model", "replicas", "pred/s", "batch", "queue", "p99 ms", "errors/s")
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for m in sorted(view.models, key=lambda m: (m.name, m.version)):
        bound = "-" if m.queue_bound is None else str(m.queue_bound)
        table.add_row(
            f"{m.name}:{m.version}{' *' if m.current else ''}",
            Text(str(m.replicas), style="" if m.replicas else "bold red"),
            _number(m.predictions_per_s),
            _number(m.mean_batch_size),
            f"{m.queue_length}/{bound}",
            _latency(m.p99_ms),
            Text(_number(m.errors_per_s), style="bold red" if m.errors_per_s > 0 else ""),
        )
    return table


def header(cluster: str, view: ClusterViewReply | None, problem: str | None) -> Text:
    """Cluster, frontends up/total (naming those down) and the view's time; a problem in red."""
    text = Text.assemble(("clipper top", "bold"), " · cluster ", (cluster, "bold cyan"))
    if view is not None:
        up = sum(f.up for f in view.frontends)
        style = "green" if up == len(view.frontends) else "bold red"
        text.append(" · frontends ")
        text.append(f"{up}/{len(view.frontends)} up", style=style)
        down = [f.http_address for f in view.frontends if not f.up]
        if down:
            text.append(f" (down: {', '.join(down)})", style=style)
        text.append(" · " + datetime.fromtimestamp(view.time_s).strftime("%H:%M:%S"))
        if view.interval_s is None:
            text.append(" · rates from the next refresh", style="dim")
    if problem is not None:
        text.append(f"\n{problem}; retrying", style="bold red")
        if view is not None:
            text.append(" (the tables show the last view read)", style="dim")
    return text


def frame(cluster: str, view: ClusterViewReply | None, problem: str | None) -> RenderableType:
    """Everything one refresh shows."""
    parts: list[RenderableType] = [header(cluster, view, problem)]
    if view is not None:
        parts += [apps_table(view), models_table(view)]
    return Group(*parts)


def read_once(client: ClusterViewClient, interval_s: float, patience_s: float = 5.0) -> ClusterViewReply:
    """A view with rates if one comes within `patience_s`: a management frontend's first scrape has none."""
    deadline = time.monotonic() + patience_s
    view = client.fetch()
    while view.interval_s is None and time.monotonic() < deadline:
        time.sleep(interval_s)
        view = client.fetch()
    return view


def run_live(client: ClusterViewClient, cluster: str, interval_s: float, console: Console) -> None:
    """Refresh the frame in place every `interval_s` until Ctrl-C, which ends it quietly.

    Ctrl-C only raises a flag: a KeyboardInterrupt could land anywhere (in a finalizer that swallows it,
    half-way through a redraw), and a handler must not take locks, as Event.set does. The wait between
    refreshes looks at the flag every WAKE_S.
    """
    stopping = False

    def on_ctrl_c(_signum: int, _stack: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    view: ClusterViewReply | None = None
    try:
        with Live(console=console, auto_refresh=False) as live:
            next_s = time.monotonic()
            while not stopping:
                try:
                    view, problem = client.fetch(), None
                except ClipperError as e:
                    problem = str(e)
                live.update(frame(cluster, view, problem), refresh=True)
                next_s = max(next_s + interval_s, time.monotonic())
                while not stopping and time.monotonic() < next_s:
                    time.sleep(min(WAKE_S, max(0.0, next_s - time.monotonic())))
    finally:
        signal.signal(signal.SIGINT, previous)
