"""What the `clipper` command shows: rich tables of processes, apps, models and replicas, and addresses."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from clipper.admin.connection import ClipperConnection
from clipper.admin.managers.local import LocalContainerManager
from clipper.admin.managers.process import ProcessRecord, is_alive
from clipper.selection import DEFAULT_POLICY


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    return table


def processes_table(cluster: str, records: list[ProcessRecord]) -> Table:
    """One row per recorded process of the cluster, running or exited."""
    table = _table(f"Processes of cluster {cluster}", "role", "pid", "state", "ports", "log")
    for r in records:
        alive = is_alive(r)
        ports = ", ".join(f"{k} {v}" for k, v in r.ports.items())
        table.add_row(r.role, str(r.pid), "[green]running" if alive else "[red]exited", ports, r.log_path)
    return table


def apps_table(conn: ClipperConnection) -> Table:
    """One row per app; a multi-model policy shows each linked model's current weight."""
    table = _table(
        "Applications", "name", "input type", "SLO (µs)", "default output", "linked models", "policy"
    )
    for a in conn.get_all_apps(verbose=True):
        linked = ", ".join(a["linked_models"])
        policy = a.get("policy", DEFAULT_POLICY)
        shown = "default"
        if policy != DEFAULT_POLICY:
            weights = conn.get_app_policy(a["name"]).get("weights", {})
            shown = policy + "".join(f"\n{m} {w:.3f}" for m, w in sorted(weights.items()))
        row = [a["name"], a["input_type"], str(a["latency_slo_micros"]), a["default_output"], linked, shown]
        table.add_row(*row)
    return table


def policy_text(app: str, policy: dict[str, Any]) -> str:
    """`clipper policy APP`: the policy, its params as JSON and each linked model's weight."""
    name = "default" if policy["policy"] == DEFAULT_POLICY else policy["policy"]
    lines = [f"{app}: policy {name}", f"  params: {json.dumps(policy['params'], sort_keys=True)}"]
    for model, weight in sorted(policy.get("weights", {}).items()):
        lines.append(f"  {model}: weight {weight:.3f}")
    return "\n".join(lines)


def models_table(conn: ClipperConnection, manager: Any) -> Table:
    """Registered model versions, with the replica count `manager` runs of each."""
    table = _table("Models", "name", "version", "input type", "current", "replicas", "labels", "source")
    for m in conn.get_all_models(verbose=True):
        count = manager.get_num_replicas(m["model_name"], m["model_version"])
        table.add_row(
            m["model_name"],
            m["model_version"],
            m["input_type"],
            "yes" if m["is_current_version"] else "",
            str(count),
            ", ".join(label for label in m["labels"] if label),
            m["container_name"],
        )
    return table


def containers_table(conn: ClipperConnection) -> Table:
    table = _table("Connected replicas", "model", "version", "replica id", "input type")
    for c in conn.get_all_model_replicas(verbose=True):
        table.add_row(c["model_name"], c["model_version"], str(c["model_replica_id"]), c["input_type"])
    return table


def addresses(manager: LocalContainerManager) -> str:
    """Where the cluster serves predictions, management, the dashboard and metrics (Prometheus's page when
    the cluster runs one, else a frontend's /metrics), and where its state lives."""
    query, admin, metric = manager.get_query_addr(), manager.get_admin_addr(), manager.get_metric_addr()
    metrics = f"http://{metric}/graph" if metric != query else f"http://{metric}/metrics"
    return "\n".join(
        [
            f"  predictions: http://{query}/<app>/predict",
            f"  management:  http://{admin}/admin/",
            f"  dashboard:   http://{admin}/dashboard",
            f"  metrics:     {metrics}",
            f"  state:       {manager.state_dir}",
        ]
    )
