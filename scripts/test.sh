#!/usr/bin/env bash
# Set up and run the whole test suite. Where this machine can run a Docker engine (as root, with apt), the
# engine is started and the Docker tests are required to run; elsewhere they are skipped with a reason.
# Every model framework the deployers serve is installed (CPU builds), and Chromium and Prometheus from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,frameworks-test
bash scripts/system-packages.sh
# Where they are installed, the browser and Prometheus tests must run rather than skip.
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  export CLIPPER_TEST_REQUIRE_BROWSER=1
fi
if command -v prometheus >/dev/null 2>&1; then
  export CLIPPER_TEST_REQUIRE_PROMETHEUS=1
fi
if [ "$(id -u)" = 0 ] && [ "${CLIPPER_SKIP_DOCKER:-0}" != 1 ]; then
  if bash scripts/docker-engine.sh && bash scripts/base-image.sh; then
    export CLIPPER_TEST_REQUIRE_DOCKER=1
  else
    echo "test.sh: no Docker engine; Docker tests will be skipped" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
