#!/usr/bin/env bash
# The benchmarks in one command (issue #5): ./benchmarks/run.sh [--quick] [--scenarios S1,S3] [--repeat N]
# Sets up what they need, all from PyPI, reused when present:
#   .venv              the package (scripts/setup.sh) + psutil (the writers' RSS/CPU)
#   (py-spy too with --profile)
#   .blisswriter_venv  ESRF's writer, blisswriter 2.0.0 + blissdata 2.2.0 (scripts/bench_env.sh)
# then runs `python -m benchmarks`; its --help lists the options.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if ! .venv/bin/python -c "import psutil" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check psutil 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
fi
case " $* " in
    *" --profile"*)
        [ -x .venv/bin/py-spy ] || .venv/bin/python -m pip install --quiet --disable-pip-version-check py-spy 2>&1 \
            | { grep -v "is ignored: it is neither a file nor a directory" || true; } ;;
esac
./scripts/bench_env.sh
exec .venv/bin/python -m benchmarks "$@"
