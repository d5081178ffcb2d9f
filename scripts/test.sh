#!/usr/bin/env bash
# Set up and run the whole test suite. Where this machine can run a Docker engine (as root, with apt), the
# engine is started and the Docker tests are required to run; elsewhere they are skipped with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
if [ "$(id -u)" = 0 ] && [ "${CLIPPER_SKIP_DOCKER:-0}" != 1 ]; then
  if bash scripts/docker-engine.sh && bash scripts/base-image.sh; then
    export CLIPPER_TEST_REQUIRE_DOCKER=1
  else
    echo "test.sh: no Docker engine; Docker tests will be skipped" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
