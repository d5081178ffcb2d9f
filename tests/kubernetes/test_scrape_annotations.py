"""Kubernetes keeps Clipper's Prometheus hook: query frontend pods say where their /metrics is."""

from __future__ import annotations

from clipper.admin.managers import kube_manifests as km


def test_query_frontend_pods_carry_every_scrape_annotation() -> None:
    """Scrape on, the port the frontend's `http` container port serves, path /metrics; and only query
    frontends (the management frontend and models export nothing at /metrics)."""
    spec = km.ClusterSpec.build(name="scraped", num_frontends=2)
    annotated = {}
    for obj in km.cluster_objects(spec, {}, []):
        if obj["kind"] == "Deployment":
            template = obj["spec"]["template"]
            annotations = template["metadata"].get("annotations", {})
            if any(k.startswith("prometheus.io/") for k in annotations):
                annotated[obj["metadata"]["name"]] = (annotations, template["spec"]["containers"][0])
    assert list(annotated) == [spec.names.query]
    annotations, container = annotated[spec.names.query]
    http = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(http),
        "prometheus.io/path": "/metrics",
    }
