# clipper/prometheus:<version>: Debian's Prometheus server on the offline base image, for a Docker cluster.
# The Docker manager mounts the prometheus.yml it writes (clipper/admin/managers/prometheus.py) and passes the
# flags; built by clipper.admin.managers.prometheus_docker with host networking (Debian's mirror is reached
# as the machine reaches it). No context files.
ARG BASE_IMAGE=clipper/base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/usr/bin/prometheus"]
