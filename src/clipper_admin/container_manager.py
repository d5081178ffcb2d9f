"""Clipper 0.4's `clipper_admin.container_manager`: the ContainerManager interface and its constants."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from clipper.admin.exceptions import ClipperException
from clipper.admin.managers.base import (
    CLIPPER_DOCKER_LABEL,
    CLIPPER_DOCKER_PORT_LABELS,
    CLIPPER_INTERNAL_MANAGEMENT_PORT,
    CLIPPER_INTERNAL_METRIC_PORT,
    CLIPPER_INTERNAL_QUERY_PORT,
    CLIPPER_INTERNAL_REDIS_PORT,
    CLIPPER_INTERNAL_RPC_PORT,
    CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL,
    CLIPPER_MODEL_CONTAINER_LABEL,
    CLIPPER_NAME_LABEL,
    CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL,
    CLIPPER_QUERY_FRONTEND_ID_LABEL,
    ContainerManager,
)
from clipper.admin.managers.base import model_container_label as create_model_container_label
from clipper.schema import NO_CONTAINER as CONTAINERLESS_MODEL_IMAGE

CLIPPER_INTERNAL_FLUENTD_PORT = 24224
CLIPPER_METRIC_CONFIG_LABEL = "ai.clipper.metric.config"
CLIPPER_FLUENTD_CONFIG_LABEL = "ai.clipper.fluentd.config"

__all__ = [
    "CLIPPER_DOCKER_LABEL",
    "CLIPPER_DOCKER_PORT_LABELS",
    "CLIPPER_FLUENTD_CONFIG_LABEL",
    "CLIPPER_INTERNAL_FLUENTD_PORT",
    "CLIPPER_INTERNAL_MANAGEMENT_PORT",
    "CLIPPER_INTERNAL_METRIC_PORT",
    "CLIPPER_INTERNAL_QUERY_PORT",
    "CLIPPER_INTERNAL_REDIS_PORT",
    "CLIPPER_INTERNAL_RPC_PORT",
    "CLIPPER_METRIC_CONFIG_LABEL",
    "CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL",
    "CLIPPER_MODEL_CONTAINER_LABEL",
    "CLIPPER_NAME_LABEL",
    "CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL",
    "CLIPPER_QUERY_FRONTEND_ID_LABEL",
    "CONTAINERLESS_MODEL_IMAGE",
    "ClusterAdapter",
    "ContainerManager",
    "create_model_container_label",
    "parse_model_container_label",
]


class ClusterAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes log messages with `[<cluster_name>]`, as Clipper's managers do."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[{(self.extra or {}).get('cluster_name')}] {msg}", kwargs


def parse_model_container_label(label: str) -> list[str]:
    """`<name>_<version>` -> `[name, version]`."""
    parts = label.split("_")
    if len(parts) != 2:
        raise ClipperException(f"Unable to parse model container label {label}")
    return parts
