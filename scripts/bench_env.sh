#!/usr/bin/env bash
# Builds the venv in which the benchmarks run ESRF's writer for comparison:
# blisswriter 2.0.0 with blissdata 2.2.0 (the versions ESRF ships together), plus psutil,
# hdf5plugin and gevent (blisswriter's test extras: what its session writer imports).
# It is separate from .venv because blissdata 2.2 and 2.4 cannot share one environment.
#
# Idempotent: a stamp file names what was installed; re-runs take a fraction of a second.
# BENCH_ENV_FORCE=1 rebuilds. BLISSWRITER_VENV overrides the folder.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${BLISSWRITER_VENV:-$REPO/.blisswriter_venv}"
PYTHON="${PYTHON:-python3}"
REQS=(blisswriter==2.0.0 blissdata==2.2.0 psutil hdf5plugin gevent)

say() { printf '[bench_env] %s\n' "$*" >&2; }
key=$(printf '%s\n' "${REQS[@]}" | sha1sum | cut -c1-12)
stamp="$VENV/.stamp-$key"
if [ "${BENCH_ENV_FORCE:-0}" = 1 ]; then rm -rf "$VENV"; fi
if [ -f "$stamp" ] && [ -x "$VENV/bin/python" ]; then
    exit 0
fi
t0=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
say "installing ${REQS[*]} (about a minute)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQS[@]}" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
rm -f "$VENV"/.stamp-*
touch "$stamp"
"$VENV/bin/python" -c 'import importlib.metadata as m; print("[bench_env]", ", ".join(f"{n} {m.version(n)}" for n in ("blisswriter","blissdata","h5py","numpy","redis","redis-om","pydantic")))' >&2
say "ready in $(( $(date +%s) - t0 )) s"
