#!/usr/bin/env bash
# The README's test command: set up (idempotently), type-check, then run the default test suite.
# Test files run in parallel (pytest-xdist, one file per worker at a time so a file's
# camera simulator and broker stay with it): most of a test's time is spent waiting on
# real streams, a real broker and real outages, not on the CPU.
# Extra arguments go to pytest, e.g. scripts/test.sh -k config -x, or -n 0 for serial.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/mypy  # type check (pyproject.toml [tool.mypy]): an error fails the run before the tests
exec .venv/bin/python -m pytest -n "${NVR_EDGE_TEST_WORKERS:-6}" --dist loadfile "$@"
