#!/usr/bin/env bash
# The whole test suite: real Redis, replayed BLISS scans, NeXus validators, and the
# real-BLISS tier (BLISS 2.2.1 from PyPI in .bliss_venv, built once by scripts/bliss_env.sh;
# NXW_REAL_BLISS=0 leaves it out).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NXW_REAL_BLISS="${NXW_REAL_BLISS:-1}"
exec .venv/bin/python -m pytest tests "$@"
