#!/usr/bin/env bash
# Clipper 0.4's own integration tests against this implementation: see scripts/run_clipper_integration_tests.py
# for what is patched and why. Usage: scripts/run-clipper-integration-tests.sh CLIPPER_CHECKOUT [local|docker]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "${PYTHON:-$here/../.venv/bin/python}" "$here/run_clipper_integration_tests.py" "$@"
