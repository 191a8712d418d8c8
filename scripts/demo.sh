#!/usr/bin/env bash
# The main job on an embedded default: a real Redis, a replayed BLISS session,
# NexusSessionWriter writing it, and a summary of the files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/nexus-writer-demo --output "demo_output/$(date +%Y%m%d_%H%M%S)" "$@"
