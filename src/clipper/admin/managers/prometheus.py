"""A Prometheus server for a cluster: its prometheus.yml, command line and the discovery of frontends.

Query frontends come and go (`set_num_frontends`, restarts), so Prometheus does not get a fixed target list:
it asks the management frontend, `GET /admin/metrics_targets` (HTTP service discovery), which answers from
the live-frontend registry every query frontend heartbeats into. Nothing has to run beside Prometheus to keep
a file current (file_sd would need that), and the management frontend's own auth guards the list. Tokens
reach Prometheus as `credentials_file` paths into the cluster's secrets directory, never as values.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pydantic import BaseModel, Field

from clipper.admin.managers.secrets import AUTH_TOKEN, QUERY_TOKEN, ClusterSecrets
from clipper.frontends.metrics_targets import TARGETS_PATH

FRONTENDS_JOB = "clipper-query-frontends"
IMAGE_NAME = "clipper/prometheus"
NOT_INSTALLED = (
    "no `prometheus` binary on PATH, so this cluster runs without a Prometheus server; install one "
    "(`apt-get install prometheus` on Debian) and start the cluster again. Each query frontend still "
    "serves /metrics."
)


class PrometheusPlan(BaseModel):
    """Where Prometheus finds the cluster and how often it scrapes; paths are as Prometheus sees them."""

    management_address: str = Field(description="host:port of the management frontend.")
    listen_address: str = Field(description="host:port Prometheus serves its UI and API on.")
    scrape_interval_s: float = Field(default=5.0, gt=0)
    admin_token_file: str | None = Field(default=None, description="The admin token, for the targets list.")
    query_token_file: str | None = Field(default=None, description="The query token, for /metrics.")


def token_files(secrets: ClusterSecrets, seen_at: str) -> tuple[str | None, str | None]:
    """The plan's admin and query token files: each token the cluster has, in its secrets directory as
    Prometheus sees it (`seen_at`: the directory itself, or where a container mounts it)."""
    admin, query = (f"{seen_at}/{name}" if secrets.read(name) else None for name in (AUTH_TOKEN, QUERY_TOKEN))
    return admin, query


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _bearer(token_file: str | None) -> dict[str, object]:
    return {} if token_file is None else {"authorization": {"type": "Bearer", "credentials_file": token_file}}


def prometheus_config(plan: PrometheusPlan) -> str:
    """prometheus.yml (as JSON, which YAML includes): the query frontends, found through the management
    frontend, and Prometheus itself."""
    interval = _duration(plan.scrape_interval_s)
    discovery = {
        "url": f"http://{plan.management_address}{TARGETS_PATH}",
        "refresh_interval": interval,
        **_bearer(plan.admin_token_file),
    }
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": FRONTENDS_JOB,
                "metrics_path": "/metrics",
                "http_sd_configs": [discovery],
                **_bearer(plan.query_token_file),
            },
            {"job_name": "prometheus", "static_configs": [{"targets": [plan.listen_address]}]},
        ],
    }
    return json.dumps(config, indent=2)  # JSON is YAML: no YAML library needed


def write_config(plan: PrometheusPlan, directory: Path) -> Path:
    """Write `<directory>/prometheus.yml` (and make `<directory>/data` for its database); return its path."""
    (directory / "data").mkdir(parents=True, exist_ok=True)
    path = directory / "prometheus.yml"
    path.write_text(prometheus_config(plan))
    return path


def prometheus_args(config_file: str, data_dir: str, listen_address: str) -> list[str]:
    """The server's flags (after the binary's name)."""
    return [
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={listen_address}",
        "--storage.tsdb.retention.time=2d",
    ]


def find_binary() -> str | None:
    """The `prometheus` executable on PATH, if there is one."""
    return shutil.which("prometheus")
