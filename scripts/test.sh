#!/usr/bin/env bash
# The whole test suite (real Redis, replayed BLISS scans, NeXus validators).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest tests "$@"
