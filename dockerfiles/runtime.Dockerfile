# clipper/clipper:<version>: one image for every role of a cluster, chosen by command:
#   python -m clipper.frontends.query | python -m clipper.frontends.management | python -m clipper.runtime
#   | redis-server (Debian's, from the base image).
# Built by clipper.admin.images.build_runtime_image; context: pyproject.toml, README.md, src/, ca-certificates.crt.
ARG BASE_IMAGE=clipper/base:bookworm
FROM ${BASE_IMAGE}

# Index settings of the building machine; empty means pip's default index.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG CLOUDPICKLE_VERSION
ARG PYTHON_VERSION

COPY ca-certificates.crt /etc/clipper/ca-certificates.crt
ENV PIP_CERT=/etc/clipper/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=180 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1

RUN python3 -c "import sys; v = '%d.%d' % sys.version_info[:2]; assert v == '${PYTHON_VERSION}', v" \
 && python3 -m venv /opt/venv

# Dependencies first (cached while pyproject.toml is unchanged), then the source. The docker and kubernetes
# extras let the management frontend act on its cluster's replicas (clipper/admin/replica_control.py).
COPY pyproject.toml /src/pyproject.toml
RUN [ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL; \
    [ -n "${PIP_EXTRA_INDEX_URL:-}" ] || unset PIP_EXTRA_INDEX_URL; \
    python3 -c "import tomllib; d = tomllib.load(open('/src/pyproject.toml', 'rb')); \
extras = d['project']['optional-dependencies']; \
print('\n'.join(d['project']['dependencies'] + d['build-system']['requires'] + extras['docker'] + extras['kubernetes']))" \
    > /tmp/requirements.txt \
 && echo "cloudpickle==${CLOUDPICKLE_VERSION}" > /tmp/constraints.txt \
 && pip install -r /tmp/requirements.txt -c /tmp/constraints.txt \
 && rm /tmp/requirements.txt /tmp/constraints.txt

COPY README.md /src/README.md
COPY src /src/src
RUN pip install --no-deps --no-build-isolation /src && rm -rf /src

LABEL ai.clipper.python.version="${PYTHON_VERSION}" \
      ai.clipper.cloudpickle.version="${CLOUDPICKLE_VERSION}"
WORKDIR /
CMD ["python", "-m", "clipper.runtime"]
