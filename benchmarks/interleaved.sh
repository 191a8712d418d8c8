#!/usr/bin/env bash
# Compare commits on one scenario, runs interleaved: ./benchmarks/interleaved.sh ROUNDS SCENARIO REV...
#
# A shared machine's load moves a scenario's figures by more than a change does (S3_live by
# 1-3 ms of its ~15 between runs of one commit). Runs of the commits taken in turn, round
# after round, see the same load: their medians compare (doc/benchmarks.md, session 8).
# Each REV is checked out in a temporary worktree that uses this checkout's .venv (its own
# package first on the path); our writer only, one repeat per round.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n 2p "$0"; exit 2; }
rounds=$1 scenario=$2
shift 2
./scripts/setup.sh >/dev/null
.venv/bin/python -c "import psutil" 2>/dev/null || .venv/bin/python -m pip install --quiet psutil
work=$(mktemp -d /tmp/nxw_interleaved.XXXX)
trap 'for d in "$work"/wt-*; do git worktree remove --force "$d" 2>/dev/null || true; done; rm -rf "$work"' EXIT
for rev in "$@"; do
    git worktree add --detach --quiet "$work/wt-$rev" "$rev"
    ln -s "$PWD/.venv" "$work/wt-$rev/.venv"
done
for round in $(seq "$rounds"); do
    for rev in "$@"; do
        wt="$work/wt-$rev" out="$work/$rev-$round.json"
        (cd "$wt" && PYTHONPATH="$wt" .venv/bin/python -m benchmarks --scenarios "$scenario" --writers ours \
            --repeat 1 --out "$out" >/dev/null 2>&1) || { echo "$rev round $round: failed"; continue; }
        .venv/bin/python - "$out" "$rev" "$round" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
ours = next(r for r in runs if r["writer"] == "ours")
bound = next((r for r in runs if r["writer"] == "bound"), None)
over = f", {ours['per_scan_ms'] - bound['per_scan_ms']:.1f} over the bound" if bound and "per_scan_ms" in ours else ""
print(f"{sys.argv[2]} round {sys.argv[3]}: {ours.get('per_scan_ms', float('nan')):.1f} ms per scan{over}", flush=True)
PY
    done
done
