#!/usr/bin/env bash
# The whole test suite: real Redis, replayed BLISS scans, NeXus validators, and the
# real-BLISS tier (BLISS 2.2.1 from PyPI in .bliss_venv, built once by scripts/bliss_env.sh;
# NXW_REAL_BLISS=0 leaves it out).
#
# Two runs, one at each end of the blissdata range pyproject.toml declares:
#   1. every test, with .venv (blissdata 2.4.5, numpy 2, h5py 3.16, pytango 10);
#   2. the writer's core tests (below) again with BLISS 2.2.1's own environment, .bliss_venv
#      (blissdata 2.0.1, numpy 1.26, h5py 3.13, silx 2.2, pytango 9.5), as a beamline runs
#      our writer where BLISS is installed (also left out by NXW_REAL_BLISS=0).
# Arguments go to both runs (CI passes -q). The exit code is non-zero if either run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NXW_REAL_BLISS="${NXW_REAL_BLISS:-1}"
BLISS_VENV="${BLISS_VENV:-$PWD/.bliss_venv}"

# The writer's core tests through real Redis (about 4 minutes): the blissdata contract, every
# recorded scan written and validated, completeness, faults, lost data, crashes, content,
# detectors' files, the Tango devices.
BLISS_ENV_TESTS=(
    tests/unit tests/integration/transport
    tests/integration/{test_blissdata_contract,test_session_writer,test_fixtures_end_to_end,test_completeness}.py
    tests/integration/{test_faults,test_lost_data,test_data_loss,test_claim_lost,test_bad_input,test_hostile_files}.py
    tests/integration/{test_crash_recovery,test_content,test_scan_metadata,test_writer_options,test_default_entry}.py
    tests/integration/{test_data_policy,test_mca_content,test_lima,test_kinds_end_to_end,test_tango_device}.py
    tests/integration/{test_storage_faults,test_h5maps_end_to_end}.py
)

if [ "$NXW_REAL_BLISS" = 1 ]; then
    BLISS_VENV="$BLISS_VENV" bash scripts/bliss_env.sh
fi

status=0
echo "== lint: ruff (pyproject.toml [tool.ruff])"
.venv/bin/python -m ruff check nexus_writer_service tests benchmarks scripts session_scripts || status=$?
echo "== lint: the layers' import contracts (pyproject.toml [tool.importlinter])"
.venv/bin/lint-imports || status=$?
echo "== types: mypy on the core layers (pyproject.toml [tool.mypy])"
.venv/bin/python -m mypy || status=$?

echo "== run 1/2: every test, .venv ($(.venv/bin/python -c 'import importlib.metadata as m; print("blissdata", m.version("blissdata"), "numpy", m.version("numpy"))'))"
.venv/bin/python -m pytest tests "$@" || status=$?

if [ "$NXW_REAL_BLISS" = 1 ]; then
    echo "== run 2/2: the writer's core tests in BLISS 2.2.1's environment, $BLISS_VENV" \
         "($("$BLISS_VENV/bin/python" -c 'import importlib.metadata as m; print("blissdata", m.version("blissdata"), "numpy", m.version("numpy"), "pytango", m.version("pytango"))'))"
    # this checkout's package first, whichever checkout the venv's editable install points at
    PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$BLISS_VENV/bin/python" -m pytest "${BLISS_ENV_TESTS[@]}" "$@" \
        || status=$?
fi
exit "$status"
