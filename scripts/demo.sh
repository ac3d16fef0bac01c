#!/usr/bin/env bash
# The README's demo command: set up (idempotently), then run the demo.
# Extra arguments go to scripts/demo.py (e.g. --seconds 90, --cameras 8, --real-clips).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
