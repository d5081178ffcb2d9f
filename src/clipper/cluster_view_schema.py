"""The cluster view's JSON (`GET /admin/cluster_view`): written by the management frontend
(`frontends/cluster_view.py`), read by the dashboard and `clipper top`. Fields are added, never renamed;
readers ignore fields they do not know.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class FrontendView(BaseModel):
    """One registered query frontend and its request rate (0 when its scrape failed)."""

    id: str
    http_address: str
    up: bool
    requests_per_s: float = 0.0
    error: str | None = Field(default=None, description="Why the last scrape failed (when not up).")


class AppView(BaseModel):
    """One app: its record and its numbers summed over every live frontend."""

    name: str
    input_type: str
    slo_ms: float
    policy: str | None
    models: list[str]
    requests_per_s: float
    queries_per_s: float
    rejected_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    defaults_per_s: dict[str, float]
    cache_hit_ratio: float | None


class ReplicaMetricsView(BaseModel):
    """One replica as one frontend sees it (ids are per frontend: a replica linked to two has two)."""

    frontend: str
    replica: str
    predictions_per_s: float
    batches_per_s: float
    mean_batch_size: float | None
    p50_ms: float | None
    p99_ms: float | None
    failed_batches_per_s: float
    last_heard_s: float | None


class ModelView(BaseModel):
    """One model version: its record, replicas and numbers summed over every live frontend."""

    name: str
    version: str
    current: bool
    input_type: str
    replicas: int
    predictions_per_s: float
    batches_per_s: float
    mean_batch_size: float | None
    p50_ms: float | None
    p99_ms: float | None
    queue_length: int
    queue_bound: int | None
    errors_per_s: float
    cache_hit_ratio: float | None
    linked_apps: list[str]
    replica_metrics: list[ReplicaMetricsView]


class ClusterViewReply(BaseModel):
    """The whole view; rates are over the management frontend's last two scrapes of each frontend."""

    time_s: float = Field(description="Wall-clock time of the view (Unix seconds).")
    interval_s: float | None = Field(description="Seconds the rates are computed over; null at first.")
    frontends: list[FrontendView]
    apps: list[AppView]
    models: list[ModelView]
